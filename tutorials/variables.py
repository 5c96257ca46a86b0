"""Tutorial variables, filled in per student when a page is displayed.

The namespace is fixed: `{{ user.username }}` and, for each machine of the student's instance
(VM or container), `{{ machine.<name>.ip }}`, `{{ machine.<name>.user }}` and
`{{ machine.<name>.password }}`; `vm.<name>.*` are the same values under the older name, kept
working for tutorials written before labs had containers. Values go into HTML
that was sanitised when the page was saved, so each one is HTML-escaped here. Anything else in
braces, or a machine without an IP yet, stays visible exactly as written: a typo in a tutorial
shows up on the page instead of breaking it (and its author is warned when saving it:
tutorials.authoring).

One rule for every `vm.*` variable: they are filled in only while the instance's machines exist
(`FILLED_STATUSES`); once it is stopping, stopped, expired or failed, none is, so a stopped lab
shows neither addresses nor a login that no longer works (the password stays hidden).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied

from labs.models import LabInstance

# Markdown leaves braces alone, in code too, so the same pattern works in text, code and attributes.
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# What each machine offers as `vm.<name>.<field>`.
MACHINE_FIELDS = ("ip", "user", "password")
# `machine` since labs have containers too; `vm` as tutorials were first written.
MACHINE_PREFIXES = ("machine", "vm")
# Statuses in which the machines exist (or are being created), so their variables are filled in.
FILLED_STATUSES = (
    LabInstance.Status.REQUESTED,
    LabInstance.Status.STARTING,
    LabInstance.Status.RUNNING,
    LabInstance.Status.PAUSED,
)


def variable_names(machine_names: Iterable[str], *, with_old_names: bool = False) -> list[str]:
    """Every variable a page can use when its labs have these machines, in reading order (the
    `vm.*` names too with `with_old_names`)."""
    prefixes = MACHINE_PREFIXES if with_old_names else MACHINE_PREFIXES[:1]
    names = ["user.username"]
    for machine in sorted(set(machine_names)):
        names += [f"{prefix}.{machine}.{field}" for prefix in prefixes for field in MACHINE_FIELDS]
    return names


@dataclass(frozen=True)
class TutorialContext:
    """The values one student's page may show, keyed by variable name (`vm.web.ip`)."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_user(cls, user) -> TutorialContext:
        """Before an instance runs: only the user is known; `vm.*` variables stay as written."""
        return cls({"user.username": user.get_username()})

    @classmethod
    def for_instance(cls, user, instance: LabInstance, ips: Mapping[str, str]) -> TutorialContext:
        """`ips` maps machine names to addresses, as the cluster reports them (may be partial).

        The machines' passwords are only the owner's (and staff's) to see. An instance whose
        machines are gone (or going) fills in nothing but the user.
        """
        if instance.owner_id != user.pk and not user.is_staff:
            raise PermissionDenied("This lab instance belongs to someone else.")
        values = dict(cls.for_user(user).values)
        if instance.status not in FILLED_STATUSES:
            return cls(values)
        for machine in instance.machines.all():
            for prefix in MACHINE_PREFIXES:
                values[f"{prefix}.{machine.name}.user"] = machine.username
                values[f"{prefix}.{machine.name}.password"] = machine.password
                if ips.get(machine.name):
                    values[f"{prefix}.{machine.name}.ip"] = ips[machine.name]
        return cls(values)


def fill_variables(html_text: str, context: TutorialContext) -> str:
    """Substitute known variables, escaped; leave unknown ones as they are. One pass, so a value
    that itself looks like a variable is shown, not expanded.

    `html_text` must be the sanitised HTML saved by tutorials.rendering; the result is then safe
    to insert into a page (mark_safe in templates, innerHTML in the browser).
    """

    def substitute(match: re.Match[str]) -> str:
        value = context.values.get(match.group(1))
        return match.group(0) if value is None else html.escape(value, quote=True)

    return _VARIABLE.sub(substitute, html_text)
