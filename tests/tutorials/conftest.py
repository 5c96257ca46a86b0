"""Tutorials as instructors build them: published or not, pages with steps."""

import pytest

from tests.labs.conftest import app_cluster, image, make_lab  # noqa: F401 (fixtures: checks need a lab)
from tutorials.models import Step, Tutorial, TutorialPage


def build_tutorial(
    slug: str, *, published: bool = True, steps_per_page: tuple[int, ...] = (2, 1)
) -> Tutorial:
    tutorial = Tutorial.objects.create(title=slug.title(), slug=slug, published=published)
    for page_number, step_count in enumerate(steps_per_page):
        page = TutorialPage.objects.create(
            tutorial=tutorial, title=f"Page {page_number}", order=page_number, body_markdown="Text"
        )
        for step_number in range(step_count):
            Step.objects.create(page=page, order=step_number, text_markdown=f"Do thing {step_number}")
    return tutorial


def steps_of(tutorial: Tutorial) -> list[Step]:
    return list(Step.objects.filter(page__tutorial=tutorial).order_by("page__order", "order"))


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The shared user fixtures hash real passwords; the default hasher costs seconds per test here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def published_tutorial(db) -> Tutorial:
    """Three steps over two pages, visible to every student."""
    return build_tutorial("networking")


@pytest.fixture
def draft_tutorial(db) -> Tutorial:
    """Not published: only instructors see it."""
    return build_tutorial("draft", published=False, steps_per_page=(1,))


@pytest.fixture
def make_tutorial(db):
    """build_tutorial(slug, *, published=True, steps_per_page=(2, 1))"""
    return build_tutorial


@pytest.fixture(name="steps_of")
def steps_of_fixture():
    """steps_of(tutorial): its steps in reading order."""
    return steps_of
