"""Import a lab from plain files (labfiles.bundle): create it, or update it to match the files.

`read_bundle` checks everything before anything is written and refuses bad input with the file and
the line (LabFileError); `import_lab` then applies it in one transaction, or with `dry_run` only
says what would change. Importing the same files twice changes nothing the second time.

Matching: the lab by slug, images by name, machines by name, tutorials by slug, pages and steps by
position. What the files no longer have (machines, pages, steps, checks) is deleted; a tutorial's
links to other labs and media used elsewhere are kept. `create_only` leaves every existing object
as it is (load_demo: an instructor's edits to the demo survive).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import models, transaction

from labfiles.bundle import Bundle
from labfiles.export import (
    CHECK_FIELDS,
    CONTAINER_FIELDS,
    IMAGE_FIELDS,
    LAB_FIELDS,
    MACHINE_FIELDS,
    TUTORIAL_FIELDS,
)
from labfiles.yamlfile import LabFileError, YamlList, YamlMap, load
from labs.models import Lab, LabMachine, VMImage
from tutorials.media import validate_tutorial_media
from tutorials.models import Step, StepCheck, Tutorial, TutorialMedia, TutorialPage
from tutorials.rendering import validate_markdown

# --- Reading and checking ------------------------------------------------------------------------


@dataclass
class Record:
    """Values for one model object, and where they came from."""

    values: dict[str, Any]
    file: str
    source: YamlMap | None = None

    def line(self, key: str | None = None) -> int | None:
        if self.source is None:
            return None
        return self.source.line_of(key) if key else self.source.line


@dataclass
class PageData:
    record: Record  # title, body_markdown
    steps: list[tuple[Record, Record | None]]  # (step, its check)


@dataclass
class TutorialData:
    record: Record
    pages: list[PageData]


@dataclass
class MediaData:
    name: str  # media/<file>, as the Markdown refers to it
    title: str
    content: bytes


@dataclass
class LabData:
    lab: Record
    machines: list[Record]
    images: list[Record]
    tutorials: list[TutorialData]
    media: list[MediaData] = field(default_factory=list)


def _kind(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _record(file: str, data: Any, schema: dict[str, tuple[type, Any]], what: str) -> Record:
    """`schema`: key -> (type, default); a default of ... means required."""
    if not isinstance(data, YamlMap):
        line = getattr(data, "line", None)
        raise LabFileError(file, f"{what} must be a mapping (key: value lines)", line)
    for key in data:
        if key not in schema:
            known = ", ".join(schema)
            raise LabFileError(file, f"unknown key {key!r} in {what} (known: {known})", data.line_of(key))
    values = {}
    for key, (expected, default) in schema.items():
        if key not in data:
            if default is ...:
                raise LabFileError(file, f"{what} needs {key!r}", data.line)
            values[key] = copy.copy(default)
            continue
        value = data[key]
        if value is None and expected is str:
            value = ""
        if not _kind(value, expected):
            names = {
                bool: "true or false",
                int: "a whole number",
                str: "text",
                list: "a list",
                dict: "a mapping (name: value lines)",
            }
            raise LabFileError(
                file, f"{key!r} must be {names.get(expected, expected.__name__)}", data.line_of(key)
            )
        values[key] = value
    return Record(values=values, file=file, source=data)


def _list(file: str, data: Any, what: str) -> YamlList:
    if data is None:
        return YamlList()
    if not isinstance(data, YamlList):
        raise LabFileError(
            file, f"{what} must be a list (lines starting with '- ')", getattr(data, "line", None)
        )
    return data


def _validate(record: Record, instance: models.Model, exclude: list[str]) -> None:
    """The model's own field validators (lengths, ranges, DNS labels, Markdown, cloud-init ...)."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        key, messages = next(iter(error.message_dict.items()))
        key = key if key in record.values else None
        raise LabFileError(record.file, f"{key or 'value'}: {' '.join(messages)}", record.line(key)) from None


def _text(bundle: Bundle, name: str, referred_from: Record, key: str) -> str:
    if name not in bundle:
        raise LabFileError(referred_from.file, f"the file {name} is missing", referred_from.line(key))
    try:
        return bundle[name].decode("utf-8")
    except UnicodeDecodeError as error:
        raise LabFileError(name, "not UTF-8 text", bundle[name][: error.start].count(b"\n") + 1) from None


LAB_SCHEMA = {
    "name": (str, ...),
    "slug": (str, ...),
    "description": (str, ""),
    "published": (bool, False),
    "instances_per_user": (int, 1),
    "lifetime_minutes": (int, 120),
    "idle_timeout_minutes": (int, 30),
    "namespace_prefix": (str, ...),
    "ready_instances": (int, 0),
}
MACHINE_SCHEMA = {
    "name": (str, ...),
    "kind": (str, LabMachine.Kind.VM.value),
    "image": (str, ""),  # virtual machines: the model requires it
    "container_image": (str, ""),  # containers: the model requires it
    "command": (list, []),
    "args": (list, []),
    "env": (dict, {}),
    "shell_user": (str, ""),
    "ports": (list, []),
    "cores": (int, 1),
    "memory_mib": (int, 512),
    "opens_first": (bool, False),
    "cloud_init_user_data": (str, ""),
}
IMAGE_SCHEMA = {
    "name": (str, ...),
    "description": (str, ""),
    "container_disk_image": (str, ...),
    "default_username": (str, ...),
    "has_vnc": (bool, True),
    "has_serial_console": (bool, True),
    "has_ssh_server": (bool, False),
    "min_memory_mib": (int, 128),
    "min_cores": (int, 1),
}
TUTORIAL_SCHEMA = {
    "title": (str, ...),
    "slug": (str, ...),
    "summary": (str, ""),
    "published": (bool, False),
    "checks_gate_pages": (bool, False),
    "pages": (list, []),
}
PAGE_SCHEMA = {"title": (str, ...), "file": (str, ...), "steps": (list, [])}
STEP_SCHEMA = {"text": (str, ...), "weight": (int, 1), "check": (YamlMap, None)}
CHECK_SCHEMA = {
    "machine": (str, ...),
    "shell": (str, "sh"),
    "script": (str, ...),
    "timeout_seconds": (int, 15),
    "success_message": (str, ""),
    "failure_message": (str, ""),
}
MEDIA_SCHEMA = {"file": (str, ...), "title": (str, ...)}
assert set(LAB_SCHEMA) == set(LAB_FIELDS) and set(MACHINE_SCHEMA) == {*MACHINE_FIELDS, *CONTAINER_FIELDS}
assert set(IMAGE_SCHEMA) == set(IMAGE_FIELDS) and set(CHECK_SCHEMA) == set(CHECK_FIELDS)
assert set(TUTORIAL_SCHEMA) == {*TUTORIAL_FIELDS, "pages"}


def _read_images(bundle: Bundle) -> list[Record]:
    images, names = [], set()
    items = _list(
        "images.yaml",
        load("images.yaml", bundle["images.yaml"]) if "images.yaml" in bundle else None,
        "images",
    )
    for item in items:
        record = _record("images.yaml", item, IMAGE_SCHEMA, "an image")
        if record.values["name"] in names:
            raise LabFileError(
                "images.yaml", f"the image {record.values['name']!r} appears twice", record.line("name")
            )
        names.add(record.values["name"])
        _validate(record, VMImage(**record.values), exclude=[])
        images.append(record)
    return images


def _read_machines(bundle: Bundle, images: list[Record]) -> list[Record]:
    known = {image.values["name"]: image for image in images}
    machines, names = [], set()
    items = _list("machines.yaml", load("machines.yaml", bundle.get("machines.yaml", b"")), "machines")
    for item in items:
        record = _record("machines.yaml", item, MACHINE_SCHEMA, "a machine")
        values = record.values
        if values["name"] in names:
            raise LabFileError(
                "machines.yaml", f"the machine {values['name']!r} appears twice", record.line("name")
            )
        names.add(values["name"])
        # Plain lists and mappings for the JSON fields, as the database gives them back.
        for key in ("command", "args", "ports"):
            values[key] = list(values[key])
        values["env"] = dict(values["env"])
        # The model's own rules: field validators, what each kind needs and refuses, the image's minimums.
        _validate(
            record,
            LabMachine(**{k: v for k, v in values.items() if k != "image"}, image=_image_for(record, known)),
            exclude=["lab", "image"],
        )
        machines.append(record)
    if sum(1 for m in machines if m.values["opens_first"]) > 1:
        raise LabFileError("machines.yaml", "only one machine can open first")
    return machines


def _image_for(record: Record, known: dict[str, Record]) -> VMImage | None:
    """The image the machine names (unsaved if from images.yaml), None if it names none."""
    name = record.values["image"]
    if not name:
        return None
    if name in known:
        return VMImage(**known[name].values)
    existing = _existing_image(name)
    if existing is None:
        if record.values["kind"] == LabMachine.Kind.CONTAINER:
            return VMImage(name=name)  # for the model to say that a container has no VM image
        raise LabFileError("machines.yaml", f"no image {name!r} in images.yaml", record.line("image"))
    return existing


def _vms_without_ssh(machines: list[Record], images: list[Record]) -> dict[str, str]:
    # Checks reach a VM over SSH, a container through pods/exec (tutorials.authoring, check_target_error).
    has_ssh = {image.values["name"]: image.values["has_ssh_server"] for image in images}
    result = {}
    for machine in machines:
        image = machine.values["image"]
        if not image:
            continue
        if image not in has_ssh:
            has_ssh[image] = _existing_image(image).has_ssh_server
        if not has_ssh[image]:
            result[machine.values["name"]] = image
    return result


def _existing_image(name: str) -> VMImage | None:
    return VMImage.objects.filter(name=name).first()


def _read_tutorial(
    bundle: Bundle, file: str, machine_names: set[str], without_ssh: dict[str, str]
) -> TutorialData:
    """`without_ssh`: VM name -> its image, for VMs that checks cannot reach (no SSH server)."""
    record = _record(file, load(file, bundle[file]), TUTORIAL_SCHEMA, "a tutorial")
    folder = PurePosixPath(file).parent
    if folder.name != record.values["slug"]:
        raise LabFileError(file, f"the slug must be the folder's name, {folder.name!r}", record.line("slug"))
    _validate(record, Tutorial(**{k: v for k, v in record.values.items() if k != "pages"}), exclude=[])
    pages = []
    page_items = record.values.pop("pages")
    for page_item in _list(file, page_items, "pages"):
        page = _record(file, page_item, PAGE_SCHEMA, "a page")
        body = _text(bundle, (folder / page.values["file"]).as_posix(), page, "file")
        page_record = Record(
            values={"title": page.values["title"], "body_markdown": body}, file=file, source=page.source
        )
        try:
            validate_markdown(body)
        except ValidationError as error:
            raise LabFileError((folder / page.values["file"]).as_posix(), " ".join(error.messages)) from None
        _validate(page_record, TutorialPage(**page_record.values), exclude=["tutorial", "body_markdown"])
        steps = []
        for step_item in _list(file, page.values["steps"], "steps"):
            step = _record(file, step_item, STEP_SCHEMA, "a step")
            check_data = step.values.pop("check")
            step_record = Record(
                values={"text_markdown": step.values["text"], "weight": step.values["weight"]},
                file=file,
                source=step.source,
            )
            step_record.source.key_lines.setdefault("text_markdown", step.line("text"))
            _validate(step_record, Step(**step_record.values), exclude=["page"])
            check = None
            if check_data is not None:
                check = _record(file, check_data, CHECK_SCHEMA, "a check")
                if check.values["machine"] not in machine_names:
                    raise LabFileError(
                        file, f"the lab has no machine {check.values['machine']!r}", check.line("machine")
                    )
                if check.values["machine"] in without_ssh:
                    raise LabFileError(
                        file,
                        f"checks need an SSH server in the image: the machine {check.values['machine']} "
                        f"runs {without_ssh[check.values['machine']]}, which has none (has_ssh_server)",
                        check.line("machine"),
                    )
                _validate(check, StepCheck(**check.values), exclude=["step"])
            steps.append((step_record, check))
        pages.append(PageData(record=page_record, steps=steps))
    return TutorialData(record=record, pages=pages)


def _read_media(bundle: Bundle) -> list[MediaData]:
    if "media.yaml" not in bundle:
        return []
    media = []
    for item in _list("media.yaml", load("media.yaml", bundle["media.yaml"]), "media"):
        record = _record("media.yaml", item, MEDIA_SCHEMA, "a media file")
        name = record.values["file"]
        if not name.startswith("media/") or name not in bundle:
            raise LabFileError("media.yaml", f"no file {name} under media/", record.line("file"))
        try:
            validate_tutorial_media(ContentFile(bundle[name], name=PurePosixPath(name).name))
        except ValidationError as error:
            raise LabFileError(name, " ".join(error.messages)) from None
        media.append(MediaData(name=name, title=record.values["title"], content=bundle[name]))
    return media


def read_bundle(bundle: Bundle) -> LabData:
    """Everything the files say, checked; LabFileError (file, line) at the first problem."""
    if "lab.yaml" not in bundle:
        raise LabFileError("lab.yaml", "missing: a lab's folder has lab.yaml at its top")
    lab = _record("lab.yaml", load("lab.yaml", bundle["lab.yaml"]), LAB_SCHEMA, "the lab")
    _validate(lab, Lab(**lab.values), exclude=[])
    images = _read_images(bundle)
    machines = _read_machines(bundle, images)
    names = {m.values["name"] for m in machines}
    without_ssh = _vms_without_ssh(machines, images)
    tutorial_files = sorted(n for n in bundle if re.fullmatch(r"tutorials/[^/]+/tutorial\.yaml", n))
    tutorials = [_read_tutorial(bundle, name, names, without_ssh) for name in tutorial_files]
    return LabData(lab=lab, machines=machines, images=images, tutorials=tutorials, media=_read_media(bundle))


# --- Applying --------------------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # create, update, delete
    what: str
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.action} {self.what}{detail}"


class _Rollback(Exception):
    pass


_FIND = object()


class _Applier:
    def __init__(self, *, create_only: bool, dry_run: bool) -> None:
        self.create_only, self.dry_run = create_only, dry_run
        self.changes: list[Change] = []

    def upsert(self, model: type[models.Model], lookup: dict, values: dict, what: str, existing: Any = _FIND):
        """The object `existing` (or, by default, the one matching `lookup`) given `values`: created
        (None) or updated; the change noted."""
        obj = model.objects.filter(**lookup).first() if existing is _FIND else existing
        if obj is None:
            obj = model(**lookup, **values)
            obj.save()
            self.changes.append(Change("create", what))
            return obj
        if self.create_only:
            return obj
        changed = [key for key, value in values.items() if not _equal(obj, key, value)]
        if changed:
            for key in changed:
                setattr(obj, key, values[key])
            obj.save()
            # Renumbering alone (10, 20 -> 0, 1) changes nothing anyone sees: applied, not reported.
            if changed != ["order"]:
                self.changes.append(Change("update", what, [key for key in changed if key != "order"]))
        return obj

    def delete(self, queryset: models.QuerySet, describe) -> None:
        if self.create_only:
            return
        for obj in queryset:
            self.changes.append(Change("delete", describe(obj)))
            obj.delete()


def _equal(obj: models.Model, key: str, value: Any) -> bool:
    if isinstance(value, models.Model):
        return getattr(obj, f"{key}_id") == value.pk
    return getattr(obj, key) == value


def _media_by_content(media: MediaData, applier: _Applier) -> TutorialMedia:
    digest = hashlib.sha256(media.content).hexdigest()
    for candidate in TutorialMedia.objects.filter(title=media.title):
        try:
            with candidate.file.open("rb") as stored:
                if hashlib.sha256(stored.read()).hexdigest() == digest:
                    return candidate
        except OSError:
            continue
    created = TutorialMedia(title=media.title)
    if applier.dry_run:  # a row that is rolled back, with no file written
        created.file.name = f"tutorials/dry-run/{PurePosixPath(media.name).name}"
    else:
        created.file.save(PurePosixPath(media.name).name, ContentFile(media.content), save=False)
    created.save()
    applier.changes.append(Change("create", f"media {media.name}"))
    return created


def _with_urls(markdown: str, urls: dict[str, str]) -> str:
    for name, url in urls.items():
        markdown = re.sub(r"(?<![\w/.-])" + re.escape(name) + r"(?![\w/.-])", url, markdown)
    return markdown


def _apply(data: LabData, applier: _Applier) -> Lab:
    images = {}
    for record in data.images:
        name = record.values["name"]
        images[name] = applier.upsert(
            VMImage, {"name": name}, _without(record.values, "name"), f"image {name}"
        )
    lab_values = data.lab.values
    slug = lab_values["slug"]
    lab = applier.upsert(Lab, {"slug": slug}, _without(lab_values, "slug"), f"lab {slug}")
    existing_machines = {m.name: m for m in lab.machines.all()}
    if not applier.create_only or not existing_machines:
        applier.delete(
            lab.machines.exclude(name__in=[m.values["name"] for m in data.machines]),
            lambda m: f"machine {m.name}",
        )
        # Cleared first: at most one machine opens first, in the database as in the files.
        if not applier.create_only:
            lab.machines.filter(opens_first=True).exclude(
                name__in=[m.values["name"] for m in data.machines if m.values["opens_first"]]
            ).update(opens_first=False)
        for order, record in enumerate(data.machines):
            values = {**record.values, "order": order}
            if values["image"]:
                values["image"] = images.get(values["image"]) or VMImage.objects.get(name=values["image"])
            else:
                values["image"] = None  # a container
            name = values.pop("name")
            applier.upsert(
                LabMachine,
                {"lab": lab, "name": name},
                values,
                f"machine {name}",
                existing=existing_machines.get(name),
            )
    urls = {media.name: _media_by_content(media, applier).file.url for media in data.media}
    for tutorial_data in data.tutorials:
        _apply_tutorial(tutorial_data, lab, urls, applier)
    return lab


def _apply_tutorial(data: TutorialData, lab: Lab, urls: dict[str, str], applier: _Applier) -> None:
    slug = data.record.values["slug"]
    tutorial = Tutorial.objects.filter(slug=slug).first()
    if tutorial is not None and applier.create_only:
        return
    tutorial = applier.upsert(
        Tutorial, {"slug": slug}, _without(data.record.values, "slug"), f"tutorial {slug}", existing=tutorial
    )
    if not tutorial.labs.filter(pk=lab.pk).exists():
        tutorial.labs.add(lab)
        if not applier.changes or applier.changes[-1].what != f"tutorial {slug}":
            applier.changes.append(Change("update", f"tutorial {slug}", ["labs"]))
    pages = list(tutorial.pages.all())
    applier.delete(
        TutorialPage.objects.filter(pk__in=[p.pk for p in pages[len(data.pages) :]]),
        lambda p: f"page {p.title!r} of {slug}",
    )
    for index, page_data in enumerate(data.pages):
        values = {**page_data.record.values, "order": index}
        values["body_markdown"] = _with_urls(values["body_markdown"], urls)
        page = applier.upsert(
            TutorialPage,
            {"tutorial": tutorial},
            values,
            f"page {index + 1} of {slug}",
            existing=pages[index] if index < len(pages) else None,
        )
        steps = list(page.steps.all())
        applier.delete(
            Step.objects.filter(pk__in=[s.pk for s in steps[len(page_data.steps) :]]),
            lambda s, index=index: f"a step of page {index + 1} of {slug}",
        )
        for number, (step_record, check_record) in enumerate(page_data.steps):
            step_values = {**step_record.values, "order": number}
            step_values["text_markdown"] = _with_urls(step_values["text_markdown"], urls)
            what = f"step {number + 1} of page {index + 1} of {slug}"
            step = applier.upsert(
                Step,
                {"page": page},
                step_values,
                what,
                existing=steps[number] if number < len(steps) else None,
            )
            existing_check = StepCheck.objects.filter(step=step).first()
            if check_record is None:
                if existing_check is not None:
                    applier.delete(
                        StepCheck.objects.filter(pk=existing_check.pk),
                        lambda c, what=what: f"the check of {what}",
                    )
            else:
                applier.upsert(
                    StepCheck,
                    {"step": step},
                    check_record.values,
                    f"the check of {what}",
                    existing=existing_check,
                )


def _without(values: dict, key: str) -> dict:
    return {k: v for k, v in values.items() if k != key}


def import_lab(
    bundle: Bundle, *, dry_run: bool = False, create_only: bool = False
) -> tuple[Lab | None, list[Change]]:
    """Read, check and apply the files; with `dry_run` nothing is kept (the changes are computed by
    applying them in a transaction that is rolled back). Raises LabFileError before any write."""
    data = read_bundle(bundle)
    applier = _Applier(create_only=create_only, dry_run=dry_run)
    try:
        with transaction.atomic():
            lab = _apply(data, applier)
            if dry_run:
                raise _Rollback
    except _Rollback:
        return None, applier.changes
    return lab, applier.changes
