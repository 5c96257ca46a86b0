"""The API of labs as files: `GET /api/lab-files/<slug>/` answers the lab as a zip,
`POST /api/lab-files/` (multipart `file`: a zip; `dry_run`: true/false) imports one. Staff only."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labfiles.bundle import MAX_TOTAL_BYTES, read_zip, to_zip
from labfiles.export import export_lab
from labfiles.importing import import_lab
from labfiles.yamlfile import LabFileError
from laborchestrator.api.permissions import IsStaff
from labs.models import Lab


def zip_response(lab: Lab) -> HttpResponse:
    response = HttpResponse(to_zip(export_lab(lab), lab.slug), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{lab.slug}.zip"'
    return response


class LabImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A zip made by the export (one folder, or the files at its top).")
    dry_run = serializers.BooleanField(default=False, help_text="Only say what would change.")


class LabImportResultSerializer(serializers.Serializer):
    lab = serializers.CharField(allow_null=True, help_text="The lab's slug; null after a dry run.")
    dry_run = serializers.BooleanField()
    changes = serializers.ListField(child=serializers.CharField())


class LabExportView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        responses={(200, "application/zip"): OpenApiResponse(description="The lab's files as a zip.")}
    )
    def get(self, request: Request, slug: str) -> HttpResponse:
        return zip_response(get_object_or_404(Lab, slug=slug))


class LabImportView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=LabImportSerializer, responses={200: LabImportResultSerializer})
    def post(self, request: Request) -> Response:
        form = LabImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        if upload.size > MAX_TOTAL_BYTES:
            raise ValidationError(
                {"file": [f"The zip is larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB."]}
            )
        dry_run = form.validated_data["dry_run"]
        try:
            lab, changes = import_lab(read_zip(upload.read()), dry_run=dry_run)
        except LabFileError as error:
            raise ValidationError({"file": [str(error)]}) from None
        result = {"lab": lab.slug if lab else None, "dry_run": dry_run, "changes": [str(c) for c in changes]}
        return Response(result, status=status.HTTP_200_OK)
