import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.db import IntegrityError, transaction

pytestmark = pytest.mark.django_db


def test_sign_in_with_username_or_email(student):
    assert authenticate(username="alice", password="pw-alice-1") == student
    assert authenticate(username="ALICE@example.org", password="pw-alice-1") == student
    assert authenticate(username="alice@example.org", password="wrong") is None


def test_email_is_unique_case_insensitively_but_may_be_blank(student, django_user_model):
    with pytest.raises(IntegrityError), transaction.atomic():
        django_user_model.objects.create_user(username="alice2", email="Alice@Example.org", password="x")
    django_user_model.objects.create_user(username="nomail1", password="x")
    django_user_model.objects.create_user(username="nomail2", password="x")


def test_ensure_admin_generates_a_password_once(capsys, django_user_model, monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    assert len(password) >= 12
    assert authenticate(username="admin", password=password).is_superuser
    call_command("ensure_admin")
    assert "already exists" in capsys.readouterr().out
    assert django_user_model.objects.filter(is_superuser=True).count() == 1
