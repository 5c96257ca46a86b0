"""The CSV import: new accounts with one-time sign-in links (single use, expiring, kept as digests),
existing accounts added without a link, bad files refused whole with their lines named."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from classes.models import ClassMembership, SignInLink

pytestmark = pytest.mark.django_db


def upload(client: Client, classroom, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        f"/classes/{classroom.pk}/import/", {"roster": SimpleUploadedFile("students.csv", data, "text/csv")}
    )


@pytest.fixture
def staff_client(instructor) -> Client:
    client = Client()
    client.force_login(instructor)
    return client


def rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_import_creates_accounts_and_downloads_one_time_links(staff_client, classroom, student):
    response = upload(
        staff_client,
        classroom,
        "name,email\nCarol Chen,carol@example.org\nDan Dorn,dan@example.org\nAlice A,ALICE@example.org\n",
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    assert response["Cache-Control"] == "no-store"
    students = rows(response)
    assert [row["username"] for row in students] == ["carol", "dan", "alice"]
    carol = get_user_model().objects.get(username="carol")
    assert (carol.first_name, carol.last_name, carol.has_usable_password()) == ("Carol", "Chen", False)
    assert not carol.is_staff
    assert students[2]["sign_in_link"].startswith("existing account")  # alice keeps her password
    assert set(classroom.members.values_list("username", flat=True)) == {"carol", "dan", "alice"}
    assert ClassMembership.objects.get(user=carol).source == "import"
    classroom.refresh_from_db()
    assert classroom.code_uses == 0  # imports do not spend the sign-up code

    link = students[0]["sign_in_link"]
    assert link.startswith("http://testserver/classes/sign-in/")
    token = link.rstrip("/").rsplit("/", 1)[1]
    stored = SignInLink.objects.get(user=carol)
    assert token not in stored.token_digest and len(stored.token_digest) == 64  # only the digest is kept


def test_a_link_signs_in_once_then_asks_for_a_password(staff_client, classroom):
    link = rows(upload(staff_client, classroom, "Carol Chen,carol@example.org\n"))[0]["sign_in_link"]
    path = link.removeprefix("http://testserver")

    browser = Client()
    assert browser.get(path).status_code == 200  # a link preview spends nothing
    response = browser.post(path)
    assert response.status_code == 302 and response["Location"] == "/classes/set-password/"
    chosen = "a-long-lab-password-7"
    assert (
        browser.post(response["Location"], {"new_password1": chosen, "new_password2": chosen}).status_code
        == 302
    )
    assert "Firewalls" in browser.get("/").content.decode()
    assert Client().login(username="carol", password=chosen)

    again = Client().post(path)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()


def test_an_expired_link_is_refused(staff_client, classroom):
    link = rows(upload(staff_client, classroom, "Carol Chen,carol@example.org\n"))[0]["sign_in_link"]
    SignInLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().post(link.removeprefix("http://testserver"))
    assert response.status_code == 410 and "expired" in response.content.decode()
    assert "_auth_user_id" not in Client().session


def test_a_link_never_signs_in_an_account_that_became_staff(staff_client, classroom):
    link = rows(upload(staff_client, classroom, "Carol Chen,carol@example.org\n"))[0]["sign_in_link"]
    get_user_model().objects.filter(username="carol").update(is_staff=True)
    assert Client().post(link.removeprefix("http://testserver")).status_code == 410


def test_wrong_links_are_throttled(settings, staff_client, classroom):
    settings.CLASS_CODE_THROTTLE_ADDRESS = "2/minute"
    link = rows(upload(staff_client, classroom, "Carol Chen,carol@example.org\n"))[0]["sign_in_link"]
    guesser = Client(REMOTE_ADDR="192.0.2.20")
    assert [guesser.post(f"/classes/sign-in/guess{n}/").status_code for n in range(2)] == [410, 410]
    assert guesser.post(link.removeprefix("http://testserver")).status_code == 429
    assert SignInLink.objects.get().used_at is None  # the refused attempt spent nothing


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name,email\nCarol,carol@example.org\nDan,not-an-email\n", "Line 3: 'not-an-email' is not an email"),
        (
            "Carol,carol@example.org\nCarol again,CAROL@example.org\n",
            "Line 2: CAROL@example.org is already on line 1",
        ),
        ("Carol,carol@example.org,extra\n", "Line 1: expected 2 columns"),
        (",carol@example.org\n", "Line 1: the name must have 1 to 150"),
        ("Carol\x00,carol@example.org\n", "Line 1: contains a NUL character"),
        (b"Carol,carol@example.org\nD\xe9,d@example.org\n", "Line 2: not UTF-8 text"),
        ("name,email\n", "The file has no students"),
    ],
)
def test_bad_files_are_refused_whole_with_the_line(staff_client, classroom, text, problem):
    response = upload(staff_client, classroom, text)
    assert response.status_code == 400
    assert "Nothing was imported" in response.content.decode()
    assert problem in response.content.decode().replace("&#x27;", "'")
    assert not get_user_model().objects.filter(email__iexact="carol@example.org").exists()
    assert not classroom.memberships.exists()


def test_a_file_too_large_is_refused(staff_client, classroom):
    response = upload(staff_client, classroom, "x" * (600 * 1024))
    assert response.status_code == 400
    assert "larger than 512 KiB" in response.content.decode()


def test_user_names_do_not_collide(staff_client, classroom, student):
    students = rows(upload(staff_client, classroom, "Other Alice,alice@school.example\nA3,alice@b.example\n"))
    assert [row["username"] for row in students] == ["alice2", "alice3"]
