"""The lab catalog at /: published labs with their machines, tutorials and the student's running copy."""

from __future__ import annotations

import pytest

from labs.models import LabInstance

pytestmark = pytest.mark.django_db


def test_students_see_published_labs_with_machines_and_tutorials(client, student, lab, hidden_lab):
    client.force_login(student)
    response = client.get("/")
    assert response.status_code == 200
    assert [lab.slug for lab in response.context["labs"]] == ["explore"]
    page = response.content.decode()
    assert "Explore your lab network" in page and "Draft lab" not in page
    assert "<strong>alpha</strong>" in page and "<strong>beta</strong>" in page
    assert "Networking basics" in page
    assert 'data-lab="explore"' in page and "Start lab" in page


def test_descriptions_are_text_not_html(client, student, lab):
    client.force_login(student)
    page = client.get("/").content.decode()
    assert "Two machines &lt;b&gt;and&lt;/b&gt; a network." in page


def test_instructors_also_see_unpublished_labs(client, instructor, lab, hidden_lab):
    client.force_login(instructor)
    response = client.get("/")
    assert {lab.slug for lab in response.context["labs"]} == {"explore", "draft"}
    assert "unpublished" in response.content.decode()


def test_a_running_copy_is_offered_instead_of_a_start_button(client, student, lab, make_instance):
    instance = make_instance(owner=student, lab=lab, status=LabInstance.Status.STARTING)
    make_instance(owner=student, lab=lab, status=LabInstance.Status.STOPPED)
    client.force_login(student)
    page = client.get("/").content.decode()
    assert f'href="/instances/{instance.pk}/"' in page
    assert "Open your lab" in page and "Start lab" not in page


def test_other_students_instances_do_not_count(client, student, other_student, lab, make_instance):
    make_instance(owner=other_student, lab=lab)
    client.force_login(student)
    assert "Start lab" in client.get("/").content.decode()
