"""The admin's Markdown field: a textarea with a Preview button showing the sanitised rendering."""

from __future__ import annotations

from django import forms
from django.urls import reverse


class MarkdownTextarea(forms.Textarea):
    template_name = "tutorials/widgets/markdown_textarea.html"

    class Media:
        css = {"all": ["tutorials/tutorial-content.css"]}
        js = ["tutorials/markdown-preview.js"]

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__({"class": "vLargeTextField markdown-source", "rows": 12, **(attrs or {})})

    def get_context(self, name, value, attrs) -> dict:
        context = super().get_context(name, value, attrs)
        context["preview_url"] = reverse("admin:tutorials_markdown_preview")
        return context
