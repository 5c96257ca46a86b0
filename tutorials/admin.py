"""Tutorial authoring for instructors: tutorials with pages inline, steps per page, media uploads,
a Markdown preview and each student's progress."""

from __future__ import annotations

from django import forms
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
from labs.models import LabInstance
from tutorials.authoring import (
    check_target_error,
    located_warnings,
    tutorial_machine_names,
    tutorial_warnings,
)
from tutorials.checking import CheckRefused, step_check_run
from tutorials.media import is_image_name, markdown_snippet
from tutorials.media_deletion import media_delete, media_references
from tutorials.models import CheckRun, Step, StepCheck, Tutorial, TutorialMedia, TutorialPage
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
    fields = ("order", "text_markdown", "rendered_text", "check_summary")
    readonly_fields = ("rendered_text", "check_summary")
    formfield_overrides = MARKDOWN_WIDGETS
    show_change_link = True  # the step's own page edits its check

    @admin.display(description="saved rendering")
    def rendered_text(self, step: Step) -> str:
        return saved_rendering(step.text_html)

    @admin.display(description="check")
    def check_summary(self, step: Step) -> str:
        check = getattr(step, "step_check", None) if step.pk else None
        if check is None:
            return "none (students tick this step); add one, and the weight, on the step's own page"
        return f"runs on {check.machine}, time-out {check.timeout_seconds} s; weight {step.weight}"


class StepCheckForm(forms.ModelForm):
    class Meta:
        model = StepCheck
        fields = ("machine", "shell", "script", "timeout_seconds", "success_message", "failure_message")
        widgets = {
            "script": forms.Textarea(attrs={"rows": 12, "cols": 90, "class": "vLargeTextField check-script"})
        }

    def clean(self) -> dict:
        cleaned = super().clean()
        step = self.instance.step if self.instance.step_id else getattr(self, "parent_step", None)
        machine = cleaned.get("machine")
        if step is not None and machine:
            error = check_target_error(tutorial=step.page.tutorial, machine=machine)
            if error:
                self.add_error("machine", error)
        return cleaned


class StepCheckInline(InstructorInline, admin.StackedInline):
    """The step's check, edited with the step; the script never reaches students."""

    model = StepCheck
    form = StepCheckForm
    extra = 0
    max_num = 1
    verbose_name = "check"
    verbose_name_plural = "check (runs on the student's machine; exit status 0 passes)"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        parent = obj

        class WithParent(formset):
            def _construct_form(self, i, **form_kwargs):
                form = super()._construct_form(i, **form_kwargs)
                form.parent_step = parent
                return form

        return WithParent


class TryCheckForm(forms.Form):
    instance = forms.ModelChoiceField(queryset=LabInstance.objects.none(), label="Your running instance")


@admin.register(Step)
class StepAdmin(InstructorAdmin):
    list_display = ("__str__", "weight", "has_check")
    list_filter = ("page__tutorial",)
    search_fields = ("text_markdown", "page__title", "page__tutorial__title")
    list_select_related = ("page__tutorial", "step_check")
    fields = ("page", "order", "weight", "text_markdown", "rendered_text", "try_check")
    readonly_fields = ("rendered_text", "try_check")
    formfield_overrides = MARKDOWN_WIDGETS
    inlines = [StepCheckInline]

    @admin.display(description="check", boolean=True)
    def has_check(self, step: Step) -> bool:
        return hasattr(step, "step_check")

    @admin.display(description="saved rendering")
    def rendered_text(self, step: Step) -> str:
        return saved_rendering(step.text_html)

    @admin.display(description="try the saved check")
    def try_check(self, step: Step) -> str:
        if not step.pk or not hasattr(step, "step_check"):
            return "Save a check first."
        url = reverse("admin:tutorials_step_try_check", args=[step.pk])
        return format_html('<a class="button" href="{}">Try on a running instance</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.try_check_view)
        return [path("<int:step_id>/try-check/", view, name="tutorials_step_try_check"), *super().get_urls()]

    def try_check_view(self, request: HttpRequest, step_id: int) -> HttpResponse:
        """Run the saved check on one of the author's own running instances and show everything."""
        step = get_object_or_404(Step.objects.select_related("page__tutorial", "step_check"), pk=step_id)
        if not self.has_change_permission(request, step):
            raise PermissionDenied
        form = TryCheckForm(request.POST or None)
        form.fields["instance"].queryset = LabInstance.objects.filter(
            owner=request.user, status=LabInstance.Status.RUNNING, lab__tutorials=step.page.tutorial
        ).select_related("lab")
        run = None
        if request.method == "POST" and form.is_valid():
            try:
                run = step_check_run(
                    user=request.user, instance=form.cleaned_data["instance"], step=step, trial=True
                )
            except CheckRefused as refused:
                form.add_error("instance", refused.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "step": step,
            "form": form,
            "run": run,
            "title": f"Try the check of {step}",
        }
        return TemplateResponse(request, "admin/tutorials/step/try_check.html", context)


@admin.register(CheckRun)
class CheckRunAdmin(InstructorAdmin):
    """The log of check runs: who ran which step's check on which instance, and what came of it."""

    list_display = ("started_at", "user", "instance", "step", "result", "duration_ms", "trial")
    list_filter = ("result", "trial", "step__page__tutorial")
    search_fields = ("user__username", "message")
    list_select_related = ("user", "instance__lab", "step__page__tutorial")
    readonly_fields = [f.name for f in CheckRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


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

    # Deleting here deletes the stored file too, as the REST API does (tutorials.media_deletion.media_delete),
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
