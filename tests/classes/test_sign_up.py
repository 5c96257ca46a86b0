"""Students join a class with its code: signing up (never as staff) or signing in first; expired,
used-up and wrong codes are refused in plain words, and wrong codes are throttled per address."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from classes.joining import JoinRefused, class_join
from classes.models import ClassMembership, Classroom

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-lab-password-7"


def sign_up(client: Client, code: str, username: str, **extra):
    data = {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD, **extra}
    return client.post(f"/classes/join/{code}/", data)


def test_a_new_student_signs_up_with_the_code_and_sees_the_class_labs(classroom, lab, other_lab):
    client = Client()
    page = client.get(classroom.sign_up_path)
    assert page.status_code == 200
    assert "Join Networks 101" in page.content.decode()

    response = sign_up(client, classroom.access_code, "carol", email="carol@example.org")
    assert response.status_code == 302
    assert response["Location"] == f"/?class={classroom.pk}"
    carol = get_user_model().objects.get(username="carol")
    assert carol.email == "carol@example.org" and carol.check_password(PASSWORD)
    assert list(classroom.members.all()) == [carol]
    classroom.refresh_from_db()
    assert classroom.code_uses == 1

    catalog = client.get(response["Location"]).content.decode()
    assert "Labs of Networks 101" in catalog
    assert "Firewalls" in catalog and "class: Networks 101" in catalog
    assert "Routing" not in catalog  # the class view shows only the class's labs
    everything = client.get("/").content.decode()
    assert "Routing" in everything and everything.index("Firewalls") < everything.index("Routing")


def test_the_code_is_read_without_case_spaces_or_hyphens(classroom):
    code = classroom.access_code
    typed = f"{code[:4].lower()}-{code[4:8]} {code[8:]}"
    assert Client().get(f"/classes/join/?code={typed}").status_code == 302
    assert Client().get(f"/classes/join/{typed}/").status_code == 200


def test_a_code_never_makes_staff(classroom):
    sign_up(Client(), classroom.access_code, "mallory", is_staff="on", is_superuser="on")
    mallory = get_user_model().objects.get(username="mallory")
    assert not mallory.is_staff and not mallory.is_superuser
    assert Client().get("/classes/", follow=False).status_code == 302  # anonymous: to sign-in
    client = Client()
    client.force_login(mallory)
    assert client.get("/classes/").status_code == 403
    assert client.get(f"/classes/{classroom.pk}/").status_code == 403


def test_the_password_validators_apply(classroom):
    response = Client().post(
        classroom.sign_up_path, {"username": "dave", "password1": "12345678", "password2": "12345678"}
    )
    assert response.status_code == 400
    assert "too common" in response.content.decode()
    assert not get_user_model().objects.filter(username="dave").exists()
    classroom.refresh_from_db()
    assert classroom.code_uses == 0


def test_a_taken_user_name_is_refused_and_nothing_is_counted(classroom, student):
    response = sign_up(Client(), classroom.access_code, "ALICE")
    assert response.status_code == 400
    assert "taken" in response.content.decode()
    classroom.refresh_from_db()
    assert classroom.code_uses == 0


def test_a_signed_in_student_joins_once(classroom, student):
    client = Client()
    client.force_login(student)
    assert "signed in as" in client.get(classroom.sign_up_path).content.decode()
    assert client.post(classroom.sign_up_path).status_code == 302
    assert client.post(classroom.sign_up_path).status_code == 302
    classroom.refresh_from_db()
    assert classroom.code_uses == 1
    assert ClassMembership.objects.filter(classroom=classroom, user=student).count() == 1


def test_an_expired_code_is_refused(classroom):
    Classroom.objects.filter(pk=classroom.pk).update(code_expires_at=timezone.now() - timedelta(minutes=1))
    page = Client().get(classroom.sign_up_path)
    assert page.status_code == 404
    assert "expired" in page.content.decode()
    assert sign_up(Client(), classroom.access_code, "erin").status_code == 404
    assert not get_user_model().objects.filter(username="erin").exists()


def test_a_used_up_code_is_refused(classroom):
    for name in ("u1", "u2", "u3"):
        assert sign_up(Client(), classroom.access_code, name).status_code == 302
    page = sign_up(Client(), classroom.access_code, "u4")
    assert page.status_code == 404
    assert "full" in page.content.decode()
    assert not get_user_model().objects.filter(username="u4").exists()


def test_a_new_code_stops_the_old_one(client, instructor, classroom):
    old = classroom.access_code
    client.force_login(instructor)
    client.post(f"/classes/{classroom.pk}/new-code/")
    classroom.refresh_from_db()
    assert classroom.access_code != old
    assert Client().get(f"/classes/join/{old}/").status_code == 404
    assert Client().get(classroom.sign_up_path).status_code == 200


def test_wrong_codes_are_throttled_per_address(settings, classroom):
    settings.CLASS_CODE_THROTTLE_ADDRESS = "3/minute"
    guesser = Client(REMOTE_ADDR="192.0.2.9")
    assert [guesser.get(f"/classes/join/WRONG{n}/").status_code for n in range(3)] == [404] * 3
    refused = guesser.get(classroom.sign_up_path)  # even the right code: not checked
    assert refused.status_code == 429
    assert "Too many wrong class codes" in refused.content.decode()
    assert int(refused["Retry-After"]) > 0
    assert Client(REMOTE_ADDR="198.51.100.3").get(classroom.sign_up_path).status_code == 200


def test_right_codes_do_not_count_against_the_throttle(settings, classroom):
    settings.CLASS_CODE_THROTTLE_ADDRESS = "2/minute"
    projector_room = Client(REMOTE_ADDR="192.0.2.10")
    assert [projector_room.get(classroom.sign_up_path).status_code for _ in range(5)] == [200] * 5


@pytest.mark.django_db(transaction=True)
def test_parallel_sign_ups_never_exceed_the_maximum(instructor, lab):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL) for real parallel transactions")
    classroom = Classroom.objects.create(
        name="Rush", owner=instructor, code_expires_at=timezone.now() + timedelta(hours=1), code_max_uses=5
    )
    students = [get_user_model().objects.create_user(username=f"s{n}") for n in range(12)]
    barrier = threading.Barrier(len(students))
    outcomes: list[str] = []

    def join(user) -> None:
        barrier.wait()
        try:
            class_join(user=user, classroom=classroom)
            outcomes.append("joined")
        except JoinRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=join, args=(user,)) for user in students]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    classroom.refresh_from_db()
    assert outcomes.count("joined") == 5 and outcomes.count("refused") == 7
    assert classroom.code_uses == 5 and classroom.memberships.count() == 5


@pytest.mark.django_db(transaction=True)
def test_parallel_sign_ups_with_one_user_name_give_one_account_and_no_error(instructor, lab):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL) for real parallel transactions")
    classroom = Classroom.objects.create(
        name="Rush", owner=instructor, code_expires_at=timezone.now() + timedelta(hours=1), code_max_uses=50
    )
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def post() -> None:
        barrier.wait()
        try:
            statuses.append(sign_up(Client(), classroom.access_code, "same-name").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses)[0] == 302 and set(statuses) <= {302, 400}
    assert statuses.count(302) == 1
    assert get_user_model().objects.filter(username="same-name").count() == 1
    classroom.refresh_from_db()
    assert classroom.code_uses == 1
