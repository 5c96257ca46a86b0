"""Tutorials as the API shows them: HTML rendered when saved (tutorials.models), variables filled
in per request (tutorials.variables), and the Markdown source for instructors only; uploaded media."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.serializers import UserSummarySerializer
from laborchestrator.api.serializers import ModelCleanMixin
from laborchestrator.inputs import MAX_ID
from labs.models import Lab
from tutorials.authoring import check_target_error, markdown_warnings, tutorial_machine_names
from tutorials.models import CheckRun, Step, StepCheck, Tutorial, TutorialMedia, TutorialPage
from tutorials.progress import Progress
from tutorials.variables import TutorialContext, fill_variables


def _filled(serializer: serializers.Serializer, html_text: str) -> str:
    context: TutorialContext | None = serializer.context.get("tutorial_context")
    return html_text if context is None else fill_variables(html_text, context)


WARNINGS_HELP = (
    "What the author should check: variables that will never be filled in (with the ones that "
    "exist for the machines of the tutorial's labs) and code blocks that are never closed. They do "
    "not stop a save."
)


def _warnings(serializer: serializers.Serializer, tutorial: Tutorial, source: str) -> list[str]:
    """Warnings about `source`; the machine names are looked up once per tutorial and response."""
    cache: dict[int, list[str]] = serializer.context.setdefault("machine_names", {})
    if tutorial.pk not in cache:
        cache[tutorial.pk] = tutorial_machine_names(tutorial)
    return markdown_warnings(source, machine_names=cache[tutorial.pk])


class TutorialSerializer(ModelCleanMixin, serializers.ModelSerializer):
    labs = serializers.SlugRelatedField(
        slug_field="slug", many=True, queryset=Lab.objects.all(), required=False, help_text="Lab slugs."
    )

    class Meta:
        model = Tutorial
        fields = [
            "id",
            "slug",
            "title",
            "summary",
            "published",
            "checks_gate_pages",
            "labs",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class StepCheckSummarySerializer(serializers.Serializer):
    """What a student may know of a step's check: that it exists and where it runs. Never the script."""

    machine = serializers.CharField(help_text="The lab machine the check looks at.")


class StepSerializer(serializers.ModelSerializer):
    text_html = serializers.SerializerMethodField(help_text="Sanitised HTML with your variables filled in.")
    ticked = serializers.SerializerMethodField(
        help_text="Done: ticked (a step without a check) or verified by its check (a step with one)."
    )
    check = serializers.SerializerMethodField(
        help_text="The step's check, if it has one; press Check to run it."
    )
    verified = serializers.SerializerMethodField(
        help_text="Its check passed on the instance the progress is of."
    )

    class Meta:
        model = Step
        fields = ["id", "page", "order", "weight", "text_html", "ticked", "check", "verified"]
        read_only_fields = fields

    def get_text_html(self, step: Step) -> str:
        return _filled(self, step.text_html)

    def get_ticked(self, step: Step) -> bool:
        progress: Progress | None = self.context.get("progress")
        return progress is not None and step.pk in progress.ticked_step_ids

    @extend_schema_field(StepCheckSummarySerializer(allow_null=True))
    def get_check(self, step: Step) -> dict[str, Any] | None:
        check: StepCheck | None = getattr(step, "step_check", None)
        return None if check is None else {"machine": check.machine}

    def get_verified(self, step: Step) -> bool:
        progress: Progress | None = self.context.get("progress")
        return progress is not None and step.pk in progress.verified_step_ids


class StepCheckSerializer(serializers.ModelSerializer):
    """A step's check as instructors write it (the script never reaches students). Its fields carry
    the model's validators; where it may run is checked by the step (`check_target_error`)."""

    class Meta:
        model = StepCheck
        fields = ["machine", "shell", "script", "timeout_seconds", "success_message", "failure_message"]


class StaffStepSerializer(ModelCleanMixin, StepSerializer):
    """A step as instructors write it; `text_markdown` is rendered into `text_html` on save."""

    warnings = serializers.SerializerMethodField(help_text=WARNINGS_HELP)
    check = StepCheckSerializer(
        source="step_check", allow_null=True, required=False, help_text="null removes the check."
    )

    class Meta(StepSerializer.Meta):
        fields = [*StepSerializer.Meta.fields, "text_markdown", "warnings"]
        read_only_fields = ["id", "text_html", "ticked", "verified", "warnings"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        check = attrs.pop("step_check", ...)
        attrs = super().validate(attrs)
        if check is not ...:
            if check is not None:
                page = attrs.get("page") or (self.instance.page if self.instance is not None else None)
                error = check_target_error(tutorial=page.tutorial, machine=check["machine"]) if page else None
                if error:
                    raise serializers.ValidationError({"check": {"machine": [error]}})
            attrs["step_check"] = check
        return attrs

    def _save_check(self, step: Step, check: dict[str, Any] | None) -> None:
        if check is None:
            StepCheck.objects.filter(step=step).delete()
        else:
            StepCheck.objects.update_or_create(step=step, defaults=check)
        step.refresh_from_db()

    def create(self, validated_data: dict[str, Any]) -> Step:
        check = validated_data.pop("step_check", None)
        step = super().create(validated_data)
        if check is not None:
            self._save_check(step, check)
        return step

    def update(self, instance: Step, validated_data: dict[str, Any]) -> Step:
        check = validated_data.pop("step_check", ...)
        step = super().update(instance, validated_data)
        if check is not ...:
            self._save_check(step, check)
        return step

    def get_warnings(self, step: Step) -> list[str]:
        tutorial = self.context.get("tutorial") or step.page.tutorial  # the nested views know it
        return _warnings(self, tutorial, step.text_markdown)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        tutorial: Tutorial | None = self.context.get("tutorial")
        if tutorial is not None and "page" in fields:
            fields["page"].queryset = TutorialPage.objects.filter(tutorial=tutorial)
        return fields


class PageSerializer(serializers.ModelSerializer):
    body_html = serializers.SerializerMethodField(help_text="Sanitised HTML with your variables filled in.")
    steps = serializers.SerializerMethodField()
    locked = serializers.SerializerMethodField(
        help_text="The checks of an earlier page must pass first (tutorials with `checks_gate_pages`): "
        "its body and steps are left out until then."
    )

    class Meta:
        model = TutorialPage
        fields = ["id", "title", "order", "locked", "body_html", "steps"]
        read_only_fields = fields

    step_serializer = StepSerializer

    def _locked(self, page: TutorialPage) -> bool:
        return page.pk in self.context.get("locked_page_ids", ())

    def get_locked(self, page: TutorialPage) -> bool:
        return self._locked(page)

    def get_body_html(self, page: TutorialPage) -> str:
        return "" if self._locked(page) else _filled(self, page.body_html)

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, page: TutorialPage) -> list[dict[str, Any]]:
        if self._locked(page):
            return []
        return self.step_serializer(page.steps.all(), many=True, context=self.context).data


class StaffPageSerializer(ModelCleanMixin, PageSerializer):
    """A page as instructors write it; `body_markdown` is rendered into `body_html` on save."""

    warnings = serializers.SerializerMethodField(help_text=WARNINGS_HELP)
    step_serializer = StaffStepSerializer

    class Meta(PageSerializer.Meta):
        fields = [*PageSerializer.Meta.fields, "body_markdown", "warnings"]
        read_only_fields = ["id", "body_html", "steps", "warnings"]

    def get_warnings(self, page: TutorialPage) -> list[str]:
        return _warnings(self, self.context.get("tutorial") or page.tutorial, page.body_markdown)

    def instance_for_clean(self, attrs: dict[str, Any]) -> TutorialPage:
        page = super().instance_for_clean(attrs)
        page.tutorial = self.context["tutorial"]
        return page


class ProgressSerializer(serializers.Serializer):
    user = UserSummarySerializer()
    ticked_step_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Steps done: ticked, or verified by their check."
    )
    ticked = serializers.IntegerField(help_text="How many steps are done.")
    total = serializers.IntegerField()
    percent = serializers.IntegerField(help_text="Whole percent of the steps' weight done, rounded down.")
    score = serializers.FloatField(help_text="The same as a fraction (0-1): what gradebooks receive.")
    checked_step_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Steps with a check."
    )
    verified_step_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Checked steps whose check passed on `attempt`."
    )
    attempt = serializers.IntegerField(
        allow_null=True,
        help_text="The lab instance whose checks count: the one asked for, else your best attempt.",
    )

    @staticmethod
    def data_for(user: Any, progress: Progress) -> dict[str, Any]:
        return {
            "user": user,
            "ticked_step_ids": sorted(progress.ticked_step_ids),
            "ticked": progress.ticked,
            "total": progress.total,
            "percent": progress.percent,
            "score": progress.score,
            "checked_step_ids": sorted(progress.checked_step_ids),
            "verified_step_ids": sorted(progress.verified_step_ids),
            "attempt": progress.attempt_id,
        }


class CheckRequestSerializer(serializers.Serializer):
    instance = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="Your lab instance to check (one of its lab's machines)."
    )
    trial = serializers.BooleanField(
        default=False, help_text="Instructors: try the check on an instance you started; verifies nothing."
    )


class CheckRunSerializer(serializers.ModelSerializer):
    """A check's outcome as the student sees it: the result and one line, never the script's output."""

    class Meta:
        model = CheckRun
        fields = ["id", "step", "instance", "result", "message", "started_at", "finished_at", "duration_ms"]
        read_only_fields = fields


class StaffCheckRunSerializer(CheckRunSerializer):
    """The same for instructors, with the exit status, the output and the exact reason."""

    class Meta(CheckRunSerializer.Meta):
        fields = [*CheckRunSerializer.Meta.fields, "trial", "exit_status", "output", "detail"]
        read_only_fields = fields


class CheckOutcomeSerializer(serializers.Serializer):
    run = CheckRunSerializer()
    verified = serializers.BooleanField(help_text="The step is verified on this instance (now or before).")
    progress = ProgressSerializer(help_text="Your progress with this instance's checks.")


class TutorialDetailSerializer(TutorialSerializer):
    pages = PageSerializer(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta(TutorialSerializer.Meta):
        fields = [*TutorialSerializer.Meta.fields, "pages", "progress"]
        read_only_fields = [*TutorialSerializer.Meta.read_only_fields, "pages", "progress"]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, tutorial: Tutorial) -> dict[str, Any] | None:
        progress: Progress | None = self.context.get("progress")
        if progress is None:
            return None
        return ProgressSerializer(ProgressSerializer.data_for(self.context["request"].user, progress)).data


class StaffTutorialDetailSerializer(TutorialDetailSerializer):
    pages = StaffPageSerializer(many=True, read_only=True)


class LabTutorialProgressSerializer(serializers.Serializer):
    tutorial = serializers.SlugField()
    ticked = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.IntegerField()


class LabProgressSerializer(serializers.Serializer):
    user = UserSummarySerializer()
    tutorials = LabTutorialProgressSerializer(many=True)


class TutorialMediaSerializer(serializers.ModelSerializer):
    """An upload as instructors see it; only the title can change (PATCH).

    Without ModelCleanMixin on purpose: a rename must not re-check the stored file against today's
    upload rules (a lower size limit, or a file gone from disk, would block it).
    """

    url = serializers.SerializerMethodField(help_text="Absolute URL the file is served at.")
    kind = serializers.ChoiceField(
        choices=["image", "file"],
        read_only=True,
        help_text="`image` is shown inline where it is referenced; a `file` is downloaded.",
    )
    size = serializers.SerializerMethodField(help_text="Bytes; null if the stored file is missing.")
    markdown = serializers.CharField(read_only=True, help_text="What to paste into a page or step.")
    uploaded_by = UserSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = TutorialMedia
        fields = ["id", "title", "url", "kind", "size", "markdown", "uploaded_by", "uploaded_at"]
        read_only_fields = ["id", "uploaded_at"]

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Pages may already refer to the stored file's URL; it never changes under them silently.
        if self.instance is not None and isinstance(data, Mapping) and "file" in data:
            raise serializers.ValidationError(
                {"file": ["An uploaded file cannot be replaced. Upload the new file and delete this one."]}
            )
        return super().to_internal_value(data)

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, media: TutorialMedia) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(media.file.url) if request is not None else media.file.url

    def get_size(self, media: TutorialMedia) -> int | None:
        try:
            return media.file.size
        except OSError:
            return None


class TutorialMediaUploadSerializer(ModelCleanMixin, TutorialMediaSerializer):
    """A new upload: the file is checked by the model's validator (type, content, size) before it
    is stored, so a refused upload leaves nothing behind."""

    class Meta(TutorialMediaSerializer.Meta):
        fields = [*TutorialMediaSerializer.Meta.fields, "file"]
        extra_kwargs = {"file": {"write_only": True}}
