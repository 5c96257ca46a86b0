"""Deleting a tutorial upload: where it is still used, and removing its row and stored file."""

from __future__ import annotations

from django.db import transaction

from tutorials.models import Step, TutorialMedia, TutorialPage


def media_references(media: TutorialMedia) -> list[str]:
    """The pages and steps whose Markdown refers to the upload's URL, as the author knows them, so that
    deleting it does not silently break them. A reference by absolute URL contains the path too."""
    if not media.file:
        return []
    path = media.file.url
    pages = TutorialPage.objects.filter(body_markdown__contains=path).select_related("tutorial")
    steps = Step.objects.filter(text_markdown__contains=path).select_related("page__tutorial")
    places = [f'"{page.tutorial.title}", page "{page.title}"' for page in pages]
    places += [f'"{step.page.tutorial.title}", a step on page "{step.page.title}"' for step in steps]
    return sorted(set(places))


def media_delete(*, media: TutorialMedia) -> None:
    """Delete an upload and its stored file.

    Django never deletes a FileField's file with its row. The file goes only once the deletion is
    committed, so a rolled-back deletion keeps both the row and a file it can still serve.
    """
    name, storage = media.file.name, media.file.storage
    media.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))
