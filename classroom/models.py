"""What the class view keeps: instructors' actions, messages to students, and the tutorial page each
student has open. Instance status is not here: it is the instance's own row (labs)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from labs.models import Lab, LabInstance
from tutorials.models import Tutorial, TutorialPage

MAX_MESSAGE_LENGTH = 500


class ClassAction(models.Model):
    """One thing an instructor did from the class view, to one student's instance (or to a lab,
    for a broadcast): shown on the class view and kept for the record."""

    class Kind(models.TextChoices):
        EXTEND = "extend", "Extend time"
        PAUSE = "pause", "Pause"
        RESUME = "resume", "Resume"
        STOP = "stop", "Stop"
        MESSAGE = "message", "Message"
        WATCH = "watch", "Watch"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="class_actions")
    instance = models.ForeignKey(
        LabInstance, null=True, blank=True, on_delete=models.CASCADE, related_name="class_actions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    detail = models.CharField(max_length=MAX_MESSAGE_LENGTH + 100, blank=True)
    # Empty when it worked; else why not, in the cluster's or the lifecycle's exact words (staff only).
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["lab", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.actor} {self.kind} {self.instance_id or self.lab}"


class StudentMessage(models.Model):
    """A message from an instructor, shown as a banner on the student's instance page."""

    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=MAX_MESSAGE_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"to {self.instance_id}: {self.text[:40]}"


class TutorialPosition(models.Model):
    """The tutorial page a student has open in an instance, as their page last reported it."""

    instance = models.OneToOneField(LabInstance, on_delete=models.CASCADE, related_name="tutorial_position")
    tutorial = models.ForeignKey(Tutorial, on_delete=models.CASCADE, related_name="+")
    page = models.ForeignKey(TutorialPage, on_delete=models.CASCADE, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.instance_id} at {self.page_id}"
