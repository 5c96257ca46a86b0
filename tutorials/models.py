from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import models

from labs.models import Lab
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

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.page}: step {self.order}"

    def save(self, *args, **kwargs) -> None:
        kwargs["update_fields"] = _render_before_save(self, "text_markdown", "text_html", kwargs)
        super().save(*args, **kwargs)


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
