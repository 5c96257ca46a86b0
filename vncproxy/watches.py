"""The record of who watched whose console, when and for how long (ConsoleWatch)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from labs.models import LabInstance
from vncproxy.models import ConsoleWatch


def watch_started(*, observer: Any, instance: LabInstance, machine_name: str, kind: str) -> int:
    return ConsoleWatch.objects.create(
        observer=observer, instance=instance, machine_name=machine_name, kind=kind
    ).pk


def watch_ended(*, watch_id: int) -> None:
    ConsoleWatch.objects.filter(pk=watch_id, ended_at__isnull=True).update(ended_at=timezone.now())
