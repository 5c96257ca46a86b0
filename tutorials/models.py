from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from labs.models import Lab, LabInstance
from labs.validators import validate_dns_label
from tutorials.media import is_image_name, markdown_snippet, validate_tutorial_media
from tutorials.rendering import render_markdown, validate_markdown

MARKDOWN_HELP = (
    'Markdown. Knowledge boxes: <code>!!! knowledge "Title"</code> (also note, tip, info, warning) '
    "followed by indented text. Variables filled in for each student: <code>{{ user.username }}</code>, "
    "<code>{{ vm.NAME.ip }}</code>, <code>{{ vm.NAME.user }}</code>, <code>{{ vm.NAME.password }}</code>."
)


def _render_before_save(
    instance: models.Model, source_field: str, html_field: str, save_kwargs: dict
) -> Iterable[str] | None:
    """Render the Markdown into its HTML field; returns the `update_fields` to save with.

    Done in save() rather than a service function on purpose: the HTML is a cache of the source,
    and every path that writes the source (admin inlines, the API, the shell) must refresh it.
    Raises ValidationError for sources it cannot render, which full_clean() reports earlier in forms
    and the API (the field's validator renders; the rendering is cached for this save).
    """
    update_fields = save_kwargs.get("update_fields")
    if update_fields is not None and source_field not in update_fields:
        return update_fields
    setattr(instance, html_field, render_markdown(getattr(instance, source_field)))
    return None if update_fields is None else {*update_fields, html_field}


class TutorialQuerySet(models.QuerySet):
    def published(self) -> TutorialQuerySet:
        return self.filter(published=True)

    def visible_to(self, user) -> TutorialQuerySet:
        return self if user.is_staff else self.published()


class Tutorial(models.Model):
    """Markdown pages with steps to tick, shown beside one or more labs."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=50, unique=True)
    summary = models.TextField(blank=True)
    published = models.BooleanField(default=False)
    checks_gate_pages = models.BooleanField(
        "checks open the next page",
        default=False,
        help_text="A page's checks must pass (on the student's current lab) before the next page opens.",
    )
    labs = models.ManyToManyField(Lab, related_name="tutorials", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TutorialQuerySet.as_manager()

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class TutorialPage(models.Model):
    tutorial = models.ForeignKey(Tutorial, on_delete=models.CASCADE, related_name="pages")
    title = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)
    body_markdown = models.TextField(
        "body (Markdown)", blank=True, validators=[validate_markdown], help_text=MARKDOWN_HELP
    )
    # Rendered and sanitised when the page is saved; variables are filled in at display time.
    body_html = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.tutorial.title}: {self.title}"

    def save(self, *args, **kwargs) -> None:
        kwargs["update_fields"] = _render_before_save(self, "body_markdown", "body_html", kwargs)
        super().save(*args, **kwargs)


class Step(models.Model):
    page = models.ForeignKey(TutorialPage, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(default=0)
    text_markdown = models.TextField(
        "text (Markdown)", validators=[validate_markdown], help_text=MARKDOWN_HELP
    )
    text_html = models.TextField(blank=True, editable=False)
    weight = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(100)],
        help_text="Its share of the grade, relative to the other steps (0: not graded).",
    )

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.page}: step {self.order}"

    def save(self, *args, **kwargs) -> None:
        kwargs["update_fields"] = _render_before_save(self, "text_markdown", "text_html", kwargs)
        super().save(*args, **kwargs)


CHECK_SCRIPT_MAX_BYTES = 64 * 1024


def validate_check_script(script: str) -> None:
    if len(script.encode("utf-8")) > CHECK_SCRIPT_MAX_BYTES:
        raise ValidationError("A check script may be at most 64 KiB.", code="check_script_too_large")
    if not script.strip():
        raise ValidationError("A check needs a script.", code="check_script_empty")


class StepCheck(models.Model):
    """How a step is verified: a script run on one machine of the student's lab; its exit status
    decides. Instructors only: neither the script nor its output ever reaches a student."""

    class Shell(models.TextChoices):
        SH = "sh", "sh"
        BASH = "bash", "bash"

    step = models.OneToOneField(Step, on_delete=models.CASCADE, related_name="step_check")
    machine = models.CharField(
        max_length=63,
        validators=[validate_dns_label],
        help_text="The lab machine the script runs on (its name in the lab).",
    )
    shell = models.CharField(max_length=8, choices=Shell.choices, default=Shell.SH)
    script = models.TextField(
        validators=[validate_check_script],
        help_text="Runs as the check user (with passwordless sudo where the image has sudo). Exit status "
        "0 passes. On failure the student sees the last output line starting with FAIL: (or the last "
        "line), or the failure message below.",
    )
    timeout_seconds = models.PositiveSmallIntegerField(
        "time-out (seconds)", default=15, validators=[MinValueValidator(1), MaxValueValidator(120)]
    )
    success_message = models.CharField(max_length=500, blank=True, help_text="Shown when the check passes.")
    failure_message = models.CharField(
        max_length=500, blank=True, help_text="Shown when it fails and the script printed no FAIL: line."
    )

    def __str__(self) -> str:
        return f"check of {self.step} on {self.machine}"


class StepVerification(models.Model):
    """A check passed on an instance: verified steps belong to the attempt (the instance), since a
    check proves the state of that instance's machines. A new instance starts unverified."""

    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="step_verifications")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="verifications")
    verified_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instance", "step"], name="tutorials_stepverification_once")
        ]

    def __str__(self) -> str:
        return f"{self.step} verified on instance {self.instance_id}"


class CheckRun(models.Model):
    """One press of Check (or an author's trial): the log of who ran what, with what result."""

    class Result(models.TextChoices):
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        NOT_RUNNING = "not_running", "Machine not running"
        ERROR = "error", "Could not run"
        CANCELLED = "cancelled", "Cancelled"

    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="check_runs")
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="check_runs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="check_runs")
    trial = models.BooleanField(default=False, help_text="An author's try; never verifies the step.")
    result = models.CharField(max_length=16, choices=Result.choices, default=Result.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    exit_status = models.IntegerField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="What the student was shown.")
    detail = models.TextField(blank=True, help_text="For staff: why it could not run, in exact words.")
    output = models.TextField(blank=True, help_text="For staff: the end of stdout and stderr (64 KiB).")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One check at a time per instance: a second press while one runs is refused.
            models.UniqueConstraint(
                fields=["instance"], condition=Q(result="running"), name="tutorials_checkrun_one_running"
            )
        ]
        indexes = [models.Index(fields=["instance", "step", "-started_at"])]

    def __str__(self) -> str:
        return f"check of {self.step_id} on instance {self.instance_id}: {self.result}"


class StepCompletion(models.Model):
    """A user ticked a step. Kept per user, not per instance, so progress survives a lab restart."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="step_completions"
    )
    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="completions")
    completed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "step"], name="tutorials_stepcompletion_once")]

    def __str__(self) -> str:
        return f"{self.user} ticked {self.step}"


class TutorialMedia(models.Model):
    """An image or file uploaded for tutorials to reference from Markdown by its URL."""

    title = models.CharField(max_length=200)
    file = models.FileField(
        upload_to="tutorials/%Y/%m/",
        validators=[validate_tutorial_media],
        help_text="Images (.gif, .jpeg, .jpg, .png, .webp) or files (.pdf, .txt, .zip).",
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at"]
        verbose_name_plural = "tutorial media"

    def __str__(self) -> str:
        return self.title

    @property
    def is_image(self) -> bool:
        return is_image_name(self.file.name)

    @property
    def kind(self) -> str:
        """Images are shown inline where they are referenced; every other file is a download."""
        return "image" if self.is_image else "file"

    @property
    def markdown(self) -> str:
        return markdown_snippet(self.title, self.file.url, self.file.name)
