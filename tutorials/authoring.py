"""Warnings for a tutorial's author: Markdown that saves and renders, but not as meant.

Nothing here refuses a save (the rules that do are validators, tutorials.rendering); the admin
shows these as a warning message after saving and the API returns them as `warnings`. Two
mistakes are caught:

- a variable that will never be filled in (`{{ vm.nosuch.ip }}`, `{{ vm.SERVER.ip }}`,
  `{{ x | upper }}`): students would see it exactly as written. Which variables exist depends
  on the machines of the labs the tutorial is linked to (tutorials.variables.variable_names);
- a code fence that is never closed: Python-Markdown then renders the backticks and the "code" as
  ordinary paragraphs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from markdown.extensions.fenced_code import FencedBlockPreprocessor

from labs.models import LabMachine
from tutorials.models import Step, Tutorial, TutorialPage
from tutorials.variables import MACHINE_FIELDS, MACHINE_PREFIXES, variable_names

# Anything in double braces on one line: what an author meant as a variable, valid or not.
_BRACES = re.compile(r"\{\{([^{}\n]*)\}\}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# A line that would open a fenced code block (Python-Markdown's fences start at the line's start).
_FENCE_LINE = re.compile(r"^(~{3,}|`{3,})", re.MULTILINE)


def tutorial_machine_names(tutorial: Tutorial) -> list[str]:
    """Names of the machines of every lab the tutorial is linked to: its `vm.<name>` variables."""
    if tutorial.pk is None:
        return []
    machines = LabMachine.objects.filter(lab__tutorials=tutorial).values_list("name", flat=True)
    return sorted(set(machines))


def markdown_warnings(source: str, *, machine_names: Collection[str]) -> list[str]:
    """What the author should fix in `source`, in the order it appears; empty if nothing."""
    warnings = list(dict.fromkeys(_variable_warnings(source, machine_names)))
    if warnings:
        available = ", ".join(f"{{{{ {name} }}}}" for name in variable_names(machine_names))
        warnings.append(f"Variables you can use here: {available}.")
    return warnings + list(_unclosed_fence_warnings(source))


def tutorial_warnings(tutorial: Tutorial) -> list[str]:
    """The warnings of every page and step of the tutorial, each prefixed with where it is."""
    machine_names = tutorial_machine_names(tutorial)
    warnings = []
    for page in TutorialPage.objects.filter(tutorial=tutorial).order_by("order", "id"):
        warnings += located_warnings(page, machine_names=machine_names)
    return warnings


def located_warnings(item: TutorialPage | Step, *, machine_names: Collection[str]) -> list[str]:
    """The warnings of a page and its steps (or of one step), each prefixed with where it is."""
    if isinstance(item, Step):
        found = markdown_warnings(item.text_markdown, machine_names=machine_names)
        return [f'Page "{item.page.title}", step {item.order}: {warning}' for warning in found]
    found = markdown_warnings(item.body_markdown, machine_names=machine_names)
    warnings = [f'Page "{item.title}": {warning}' for warning in found]
    for step in item.steps.order_by("order", "id"):
        step.page = item
        warnings += located_warnings(step, machine_names=machine_names)
    return warnings


def _variable_warnings(source: str, machine_names: Collection[str]) -> Iterator[str]:
    known = set(variable_names(machine_names, with_old_names=True))
    for match in _BRACES.finditer(source):
        written, name = match.group(0), match.group(1).strip()
        if name in known:
            continue
        if not _NAME.fullmatch(name):
            yield (
                f"{written} is not a variable: only plain names are filled in (no filters or "
                "expressions). Students would see it as written."
            )
        else:
            why = _why_unknown(name, machine_names)
            yield f"Unknown variable {written}: {why} Students would see it as written."


def _why_unknown(name: str, machine_names: Collection[str]) -> str:
    parts = name.split(".")
    if parts[0] not in MACHINE_PREFIXES or len(parts) != 3:
        return "variables are user.username and machine.<name>.<ip|user|password> (or vm.<name>...)."
    prefix, machine, field = parts
    if machine not in machine_names:
        if machine.lower() in machine_names:
            return f"machine names are lower-case: did you mean {{{{ {prefix}.{machine.lower()}.{field} }}}}?"
        if not machine_names:
            return "this tutorial is not linked to a lab with machines."
        return f'no machine of this tutorial\'s labs is named "{machine}".'
    return f"a machine has {', '.join(MACHINE_FIELDS)}, not {field}."


def _unclosed_fence_warnings(source: str) -> Iterator[str]:
    # Blank out the blocks the renderer will show as code (keeping line numbers); a fence line left
    # over opens nothing, because nothing closes it.
    outside = FencedBlockPreprocessor.FENCED_BLOCK_RE.sub(
        lambda block: "\n" * block.group(0).count("\n"), source
    )
    for match in _FENCE_LINE.finditer(outside):
        line = outside.count("\n", 0, match.start()) + 1
        fence = match.group(1)
        yield (
            f"The code block opened with {fence} on line {line} is never closed, so it shows as plain "
            f"text. End it with a line of exactly {fence}."
        )


def check_target_error(*, tutorial: Tutorial, machine: str) -> str | None:
    """Why a step check of `tutorial` cannot run on the machine named `machine`, or None.

    Every lab the tutorial belongs to must have that machine, with an image that runs an SSH server
    (how checks reach a VM). A tutorial without labs yet is not refused: there is nothing to check.
    """
    labs = list(tutorial.labs.prefetch_related("machines__image"))
    for lab in labs:
        found = next((m for m in lab.machines.all() if m.name == machine), None)
        if found is None:
            names = ", ".join(m.name for m in lab.machines.all()) or "none"
            return f"The lab {lab.name} has no machine named {machine} (its machines: {names})."
        if found.image is not None and not found.image.has_ssh_server:  # containers: pods/exec
            return (
                f"Checks need an SSH server in the image: the machine {machine} of the lab {lab.name} "
                f"runs {found.image.name}, which has none (VM images: SSH server)."
            )
    return None
