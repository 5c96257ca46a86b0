from __future__ import annotations

from django.conf import settings
from django.db import models

from labs.models import LabInstance


class ConsoleTicket(models.Model):
    """A short-lived, single-use permission to open one machine's console websocket.

    Issued by the API to a signed-in user (JWT or session) and redeemed by the console proxy; it lets
    a client without cookies (a script, an embedded page) open a console. Only the SHA-256 of the
    value is stored, so a database dump yields no usable ticket. See vncproxy/tickets.py.
    """

    class Kind(models.TextChoices):
        VNC = "vnc", "VNC (graphical desktop)"
        SERIAL = "serial", "Serial console"
        TERMINAL = "terminal", "Terminal"

    value_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="console_tickets")
    machine_name = models.CharField(max_length=63)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} ticket for {self.instance_id}/{self.machine_name} ({self.user_id})"


class ConsoleWatch(models.Model):
    """An instructor watching a student's console read-only: who, whom, when and for how long.

    Written when the observer's stream opens and closed when it ends; the student's page lists them.
    """

    observer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="console_watches")
    machine_name = models.CharField(max_length=63)
    kind = models.CharField(max_length=8, choices=ConsoleTicket.Kind.choices)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.observer_id} watched {self.instance_id}/{self.machine_name} ({self.kind})"

    @property
    def seconds(self) -> int | None:
        return int((self.ended_at - self.started_at).total_seconds()) if self.ended_at else None
