"""Tutorial authoring for instructors: tutorials with pages inline, steps per page, media uploads,
a Markdown preview and each student's progress."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts.admin_access import InstructorAdmin, InstructorInline
from tutorials.authoring import located_warnings, tutorial_machine_names, tutorial_warnings
from tutorials.media import is_image_name, markdown_snippet, media_delete, media_references
from tutorials.models import Step, Tutorial, TutorialMedia, TutorialPage
from tutorials.progress import progress_by_user
from tutorials.rendering import render_markdown
from tutorials.widgets import MarkdownTextarea

MARKDOWN_WIDGETS = {models.TextField: {"widget": MarkdownTextarea}}
NOT_STORED_YET = "(shown once the upload is saved)"


# More warnings than this after one save are summed up in a last message.
MAX_WARNING_MESSAGES = 20


def warn_author(request: HttpRequest, warnings: list[str]) -> None:
    """Show what to check in the saved Markdown; the save itself went through."""
    for warning in warnings[:MAX_WARNING_MESSAGES]:
        messages.warning(request, warning)
    if len(warnings) > MAX_WARNING_MESSAGES:
        messages.warning(request, f"... and {len(warnings) - MAX_WARNING_MESSAGES} more warnings.")


def saved_rendering(html: str) -> str:
    # mark_safe is right here: the HTML was produced by tutorials.rendering, which sanitised it.
    if not html:
        return "(nothing yet: saved content is rendered here)"
    return format_html('<div class="tutorial-content">{}</div>', mark_safe(html))  # noqa: S308


class TutorialPageInline(InstructorInline, admin.StackedInline):
    model = TutorialPage
    extra = 0
    fields = ("title", "order", "body_markdown")
    formfield_overrides = MARKDOWN_WIDGETS
    show_change_link = True  # steps are edited on the page's own form


@admin.register(Tutorial)
class TutorialAdmin(InstructorAdmin):
    list_display = ("title", "slug", "published", "page_count", "lab_names", "progress_link")
    list_filter = ("published", "labs")
    search_fields = ("title", "slug", "summary")
    prepopulated_fields = {"slug": ("title",)}
    filter_horizontal = ("labs",)
    readonly_fields = ("progress_link",)
    fields = ("title", "slug", "summary", "published", "labs", "progress_link")
    inlines = [TutorialPageInline]

    def get_queryset(self, request):
        queryset = super().get_queryset(request).prefetch_related("labs")
        return queryset.annotate(_page_count=Count("pages"))

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # the pages and the linked labs
        warn_author(request, tutorial_warnings(form.instance))

    @admin.display(description="pages", ordering="_page_count")
    def page_count(self, tutorial: Tutorial) -> int:
        return tutorial._page_count

    @admin.display(description="labs")
    def lab_names(self, tutorial: Tutorial) -> str:
        return ", ".join(lab.name for lab in tutorial.labs.all())

    @admin.display(description="student progress")
    def progress_link(self, tutorial: Tutorial) -> str:
        if tutorial.pk is None:
            return "Available once the tutorial is saved."
        url = reverse("admin:tutorials_tutorial_progress", args=[tutorial.pk])
        return format_html('<a href="{}">Progress of each student</a>', url)

    def get_urls(self):
        progress = self.admin_site.admin_view(self.progress_view)
        return [
            path("<int:tutorial_id>/progress/", progress, name="tutorials_tutorial_progress"),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, tutorial_id: int) -> HttpResponse:
        tutorial = get_object_or_404(Tutorial, pk=tutorial_id)
        if not self.has_view_permission(request, tutorial):
            raise PermissionDenied
        progress = progress_by_user(tutorial)
        users = get_user_model().objects.filter(pk__in=progress).order_by("username")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "tutorial": tutorial,
            "title": f"Student progress: {tutorial.title}",
            "rows": [(user, progress[user.pk]) for user in users],
        }
        return TemplateResponse(request, "admin/tutorials/tutorial/progress.html", context)


class StepInline(InstructorInline, admin.StackedInline):
    model = Step
    extra = 1
    fields = ("order", "text_markdown", "rendered_text")
    readonly_fields = ("rendered_text",)
    formfield_overrides = MARKDOWN_WIDGETS

    @admin.display(description="saved rendering")
    def rendered_text(self, step: Step) -> str:
        return saved_rendering(step.text_html)


@admin.register(TutorialPage)
class TutorialPageAdmin(InstructorAdmin):
    list_display = ("title", "tutorial", "order", "step_count")
    list_filter = ("tutorial",)
    search_fields = ("title", "body_markdown", "tutorial__title")
    list_select_related = ("tutorial",)
    fields = ("tutorial", "title", "order", "body_markdown", "rendered_body")
    readonly_fields = ("rendered_body",)
    formfield_overrides = MARKDOWN_WIDGETS
    inlines = [StepInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_step_count=Count("steps"))

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # the steps
        page = form.instance
        warn_author(request, located_warnings(page, machine_names=tutorial_machine_names(page.tutorial)))

    @admin.display(description="steps", ordering="_step_count")
    def step_count(self, page: TutorialPage) -> int:
        return page._step_count

    @admin.display(description="saved rendering")
    def rendered_body(self, page: TutorialPage) -> str:
        return saved_rendering(page.body_html)

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="tutorials_markdown_preview"), *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """Render unsaved Markdown from the form, as students would see it (variables unfilled)."""
        if request.method != "POST":
            return JsonResponse({"error": "Use POST."}, status=405)
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            html = render_markdown(request.POST.get("source", ""))
        except ValidationError as error:
            return JsonResponse({"error": " ".join(error.messages)}, status=400)
        return JsonResponse({"html": html})


def stored_file(media: TutorialMedia) -> FieldFile | None:
    """The file the saved row refers to. On a form whose upload was refused, the object carries the
    refused file, which was never stored: its URL, Markdown and preview would point at nothing."""
    if media.pk is None:
        return None
    stored = TutorialMedia.objects.filter(pk=media.pk).first()
    return stored.file if stored is not None and stored.file else None


@admin.register(TutorialMedia)
class TutorialMediaAdmin(InstructorAdmin):
    list_display = ("title", "kind", "size", "uploaded_by", "uploaded_at", "markdown_snippet")
    list_filter = ("uploaded_at", "uploaded_by")
    search_fields = ("title", "file")
    list_select_related = ("uploaded_by",)
    fields = ("title", "file", "stored_markdown", "url", "thumbnail", "uploaded_by", "uploaded_at")
    readonly_fields = ("stored_markdown", "url", "thumbnail", "uploaded_by", "uploaded_at")

    def save_model(self, request, obj: TutorialMedia, form, change: bool) -> None:
        if obj.uploaded_by_id is None:
            obj.uploaded_by = request.user
        super().save_model(request, obj, form, change)

    # Deleting here deletes the stored file too, as the REST API does (tutorials.media.media_delete),
    # and, as there, not while pages or steps still refer to it: the admin lists them as protected.
    def get_deleted_objects(self, objs, request):
        deleted, counts, permissions, protected = super().get_deleted_objects(objs, request)
        for media in objs:
            protected += [f"{place} refers to “{media.title}”" for place in media_references(media)]
        return deleted, counts, permissions, protected

    def delete_model(self, request, obj: TutorialMedia) -> None:
        media_delete(media=obj)

    def delete_queryset(self, request, queryset) -> None:
        for media in queryset:
            media_delete(media=media)

    @admin.display(description="type")
    def kind(self, media: TutorialMedia) -> str:
        return media.kind

    @admin.display(description="size")
    def size(self, media: TutorialMedia) -> str:
        try:
            return filesizeformat(media.file.size)
        except OSError:
            return "missing"

    # The list shows rows as read from the database; the form's read-only fields show the stored
    # file (stored_file), whatever the form's object carries after a refused upload.
    @admin.display(description="Markdown to paste")
    def markdown_snippet(self, media: TutorialMedia) -> str:
        return format_html("<code>{}</code>", media.markdown) if media.file else "-"

    @admin.display(description="Markdown to paste")
    def stored_markdown(self, media: TutorialMedia) -> str:
        file = stored_file(media)
        if file is None:
            return NOT_STORED_YET
        return format_html("<code>{}</code>", markdown_snippet(media.title, file.url, file.name))

    @admin.display(description="URL")
    def url(self, media: TutorialMedia) -> str:
        file = stored_file(media)
        return format_html('<a href="{0}">{0}</a>', file.url) if file is not None else NOT_STORED_YET

    @admin.display(description="preview")
    def thumbnail(self, media: TutorialMedia) -> str:
        file = stored_file(media)
        if file is None or not is_image_name(file.name):
            return "-"
        return format_html('<img src="{}" alt="" style="max-width: 20rem; max-height: 12rem">', file.url)
