import pytest
from django.core.management import call_command

from labs.models import Lab
from tutorials.models import Step, Tutorial

pytestmark = pytest.mark.django_db


def test_demo_lab_and_tutorial_are_loaded_once_and_edits_survive():
    call_command("load_demo")
    lab = Lab.objects.get(slug="explore-your-lab-network")
    assert lab.published
    assert [m.name for m in lab.machines.all()] == ["alpha", "beta"]
    tutorial = Tutorial.objects.get(slug="explore-your-lab-network")
    assert list(tutorial.labs.all()) == [lab]
    assert tutorial.pages.count() == 2
    assert "admonition" in tutorial.pages.first().body_html  # the knowledge box rendered
    steps = Step.objects.filter(page__tutorial=tutorial).count()

    lab.name = "Edited by an instructor"
    lab.save()
    call_command("load_demo")
    assert Lab.objects.get(slug="explore-your-lab-network").name == "Edited by an instructor"
    assert Step.objects.filter(page__tutorial=tutorial).count() == steps
