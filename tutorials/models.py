from __future__ import annotations

from django.conf import settings
from django.db import models

from labs.models import Lab


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
    body_markdown = models.TextField("body (Markdown)", blank=True)
    # Rendered and sanitised when the page is saved; variables are filled in at display time.
    body_html = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.tutorial.title}: {self.title}"


class Step(models.Model):
    page = models.ForeignKey(TutorialPage, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveIntegerField(default=0)
    text_markdown = models.TextField("text (Markdown)")
    text_html = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"{self.page}: step {self.order}"


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
    file = models.FileField(upload_to="tutorials/%Y/%m/")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at"]
        verbose_name_plural = "tutorial media"

    def __str__(self) -> str:
        return self.title
