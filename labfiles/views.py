"""Labs as files from the admin: "Export as zip" on a lab's page, "Import from files" on the list."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from labfiles.api import zip_response
from labfiles.bundle import MAX_TOTAL_BYTES, read_zip
from labfiles.importing import import_lab
from labfiles.yamlfile import LabFileError
from labs.models import Lab


class ImportForm(forms.Form):
    file = forms.FileField(
        label="Lab zip", help_text="A zip made by Export (one folder of YAML, Markdown and media)."
    )
    dry_run = forms.BooleanField(label="Dry run: only show what would change", required=False, initial=True)


@staff_member_required
def export_zip(request: HttpRequest, slug: str) -> HttpResponse:
    return zip_response(get_object_or_404(Lab, slug=slug))


@staff_member_required
def import_files(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    context = {**admin.site.each_context(request), "title": "Import a lab from files", "form": form}
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            if upload.size > MAX_TOTAL_BYTES:
                raise LabFileError(upload.name, f"larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MiB")
            lab, changes = import_lab(read_zip(upload.read()), dry_run=form.cleaned_data["dry_run"])
        except LabFileError as error:
            context["error"] = str(error)
            return render(request, "labfiles/import.html", context, status=400)
        context.update(lab=lab, changes=changes, dry_run=form.cleaned_data["dry_run"])
    return render(request, "labfiles/import.html", context)
