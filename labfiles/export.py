"""Export a lab as plain files (labfiles.bundle): the same lab always gives the same bytes.

Order numbers are not written: lists are in order, and an import numbers them 0, 1, 2...
Media that the lab's tutorials refer to by their URL are written under media/ (named after their
title) and the references become relative paths (`media/<name>`), which an import turns back
into the URL of the upload it creates or finds.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.utils.text import slugify

from labfiles.bundle import Bundle
from labfiles.yamlfile import dump
from labs.models import Lab, LabMachine, VMImage
from tutorials.models import Tutorial, TutorialMedia

LAB_FIELDS = (
    "name",
    "slug",
    "description",
    "published",
    "instances_per_user",
    "lifetime_minutes",
    "idle_timeout_minutes",
    "namespace_prefix",
    "ready_instances",
)
MACHINE_FIELDS = ("name", "image", "cores", "memory_mib", "opens_first", "cloud_init_user_data")
# A container machine says so (`kind: container`) and has its own fields; a virtual machine is
# written without `kind`, so labs of VMs only export as they did before containers existed.
CONTAINER_FIELDS = (
    "name",
    "kind",
    "container_image",
    "command",
    "args",
    "env",
    "shell_user",
    "ports",
    "cores",
    "memory_mib",
    "opens_first",
)
IMAGE_FIELDS = (
    "name",
    "description",
    "container_disk_image",
    "default_username",
    "has_vnc",
    "has_serial_console",
    "has_ssh_server",
    "min_memory_mib",
    "min_cores",
)
TUTORIAL_FIELDS = ("title", "slug", "summary", "published", "checks_gate_pages")
CHECK_FIELDS = ("machine", "shell", "script", "timeout_seconds", "success_message", "failure_message")


def page_file_name(index: int, title: str) -> str:
    return f"pages/{index + 1:02d}-{slugify(title)[:40] or 'page'}.md"


def _media_names(media: list[TutorialMedia]) -> dict[int, str]:
    names: dict[int, str] = {}
    taken: set[str] = set()
    for item in media:
        suffix = PurePosixPath(item.file.name).suffix.lower()
        base = slugify(item.title)[:60] or "file"
        name, number = f"media/{base}{suffix}", 1
        while name in taken:
            number += 1
            name = f"media/{base}-{number}{suffix}"
        taken.add(name)
        names[item.pk] = name
    return names


def _machine(machine: LabMachine) -> dict:
    if machine.is_container:
        entry = {field: getattr(machine, field) for field in CONTAINER_FIELDS}
        # The database keeps a mapping's keys in an order of its own; sorted, the file is stable.
        entry["env"] = dict(sorted(machine.env.items()))
        return entry
    entry = {field: getattr(machine, field) for field in MACHINE_FIELDS}
    entry["image"] = machine.image.name
    return entry


def export_lab(lab: Lab) -> Bundle:
    machines = list(lab.machines.select_related("image").order_by("order", "id"))
    images = VMImage.objects.filter(pk__in={m.image_id for m in machines if m.image_id}).order_by("name")
    tutorials = list(
        Tutorial.objects.filter(labs=lab).order_by("slug").prefetch_related("pages__steps__step_check")
    )
    texts = [page.body_markdown for t in tutorials for page in t.pages.all()]
    texts += [step.text_markdown for t in tutorials for page in t.pages.all() for step in page.steps.all()]
    media = [
        m
        for m in TutorialMedia.objects.order_by("title", "id")
        if m.file and any(m.file.url in t for t in texts)
    ]
    media_names = _media_names(media)

    def relative(markdown: str) -> str:
        for item in media:
            markdown = markdown.replace(item.file.url, media_names[item.pk])
        return markdown

    bundle: Bundle = {"lab.yaml": dump({field: getattr(lab, field) for field in LAB_FIELDS})}
    bundle["machines.yaml"] = dump([_machine(machine) for machine in machines])
    bundle["images.yaml"] = dump(
        [{field: getattr(image, field) for field in IMAGE_FIELDS} for image in images]
    )
    for tutorial in tutorials:
        folder = f"tutorials/{tutorial.slug}"
        pages = []
        for index, page in enumerate(tutorial.pages.all()):
            name = page_file_name(index, page.title)
            bundle[f"{folder}/{name}"] = relative(page.body_markdown).encode()
            steps = []
            for step in page.steps.all():
                entry: dict = {"text": relative(step.text_markdown), "weight": step.weight}
                check = getattr(step, "step_check", None)
                if check is not None:
                    entry["check"] = {field: getattr(check, field) for field in CHECK_FIELDS}
                steps.append(entry)
            pages.append({"title": page.title, "file": name, "steps": steps})
        data = {field: getattr(tutorial, field) for field in TUTORIAL_FIELDS}
        data["pages"] = pages
        bundle[f"{folder}/tutorial.yaml"] = dump(data)
    if media:
        bundle["media.yaml"] = dump([{"file": media_names[m.pk], "title": m.title} for m in media])
        for item in media:
            with item.file.open("rb") as stored:
                bundle[media_names[item.pk]] = stored.read()
    return dict(sorted(bundle.items()))
