"""The CSV import of students (name, email): accounts for new people, memberships for everyone,
and a one-time sign-in link for each new account.

All or nothing: a file with any bad line creates nothing, and every problem is named with its line.
People whose email already has an account are added to the class without a link (a link would let
an instructor sign in as any existing user); they sign in with their own password.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.text import slugify

from classes.joining import issue_sign_in_link
from classes.models import ClassMembership, Classroom
from laborchestrator.inputs import text_problem

MAX_ROSTER_BYTES = 512 * 1024
MAX_ROSTER_ROWS = 2000
MAX_NAME_LENGTH = 150


class RosterInvalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class RosterEntry:
    line: int
    name: str
    email: str


@dataclass(frozen=True)
class ImportedStudent:
    name: str
    email: str
    username: str
    new_account: bool
    token: str | None  # the one-time sign-in token, for new accounts only


def parse_roster(data: bytes) -> list[RosterEntry]:
    """Rows of `name,email` (a header row with those words is optional), or RosterInvalid."""
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterInvalid([f"The file is larger than {MAX_ROSTER_BYTES // 1024} KiB."])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RosterInvalid([f"Line {line}: not UTF-8 text. Save the file as CSV UTF-8."]) from None
    problems: list[str] = []
    entries: list[RosterEntry] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            line = reader.line_num
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if not entries and not problems and [c.lower() for c in cells[:2]] == ["name", "email"]:
                continue
            if len(cells) != 2:
                problems.append(f"Line {line}: expected 2 columns (name, email), found {len(cells)}.")
                continue
            name, email = cells
            problem = text_problem(name) or text_problem(email)
            if problem:
                problems.append(f"Line {line}: {problem}.")
                continue
            if not name or len(name) > MAX_NAME_LENGTH:
                problems.append(f"Line {line}: the name must have 1 to {MAX_NAME_LENGTH} characters.")
            try:
                validate_email(email)
            except ValidationError:
                problems.append(f"Line {line}: {email!r} is not an email address.")
                continue
            if email.lower() in seen:
                problems.append(f"Line {line}: {email} is already on line {seen[email.lower()]}.")
                continue
            seen[email.lower()] = line
            entries.append(RosterEntry(line=line, name=name, email=email))
            if len(entries) > MAX_ROSTER_ROWS:
                raise RosterInvalid([f"Line {line}: more than {MAX_ROSTER_ROWS} students in one file."])
    except csv.Error as error:
        problems.append(f"Line {reader.line_num}: {error}.")
    if problems:
        raise RosterInvalid(problems)
    if not entries:
        raise RosterInvalid(["The file has no students: one line per student, name,email."])
    return entries


def _free_username(email: str, taken: set[str]) -> str:
    User = get_user_model()
    base = slugify(email.split("@", 1)[0]).replace("-", ".")[:30] or "student"
    base = re.sub(r"[^\w.@+-]", "", base) or "student"
    candidate, number = base, 1
    while candidate in taken or User.objects.filter(username__iexact=candidate).exists():
        number += 1
        candidate = f"{base}{number}"
    taken.add(candidate)
    return candidate


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.partition(" ")
    return first[:150], last.strip()[:150]


def import_roster(
    *, classroom: Classroom, entries: list[RosterEntry], created_by: AbstractBaseUser
) -> list[ImportedStudent]:
    User = get_user_model()
    taken: set[str] = set()
    imported: list[ImportedStudent] = []
    with transaction.atomic():
        for entry in entries:
            user = User.objects.filter(email__iexact=entry.email).first()
            token = None
            if user is None:
                first_name, last_name = _split_name(entry.name)
                user = User(
                    username=_free_username(entry.email, taken),
                    email=entry.email,
                    first_name=first_name,
                    last_name=last_name,
                )
                user.set_unusable_password()
                user.save()
                token = issue_sign_in_link(user=user, classroom=classroom, created_by=created_by)
            ClassMembership.objects.get_or_create(
                classroom=classroom, user=user, defaults={"source": ClassMembership.Source.IMPORT}
            )
            imported.append(
                ImportedStudent(
                    name=entry.name,
                    email=entry.email,
                    username=user.get_username(),
                    new_account=token is not None,
                    token=token,
                )
            )
    return imported
