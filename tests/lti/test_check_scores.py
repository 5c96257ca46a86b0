"""The score a gradebook receives once steps have checks and weights (lti/grades.py `score_for`,
from tutorials/progress.py): verified checks of the best attempt and ticks of unchecked steps, each
weighted; FullyGraded once every check passed."""

from __future__ import annotations

import pytest

from labs.models import Lab, LabInstance
from lti.grades import score_for
from tutorials.models import Step, StepCheck, StepCompletion, StepVerification, Tutorial, TutorialPage
from tutorials.progress import tutorial_progress

pytestmark = pytest.mark.django_db


@pytest.fixture
def course(student, settings):
    settings.LTI_PARTIAL_GRADING_PROGRESS = "Pending"
    lab = Lab.objects.create(name="L", slug="l", namespace_prefix="l", published=True)
    tutorial = Tutorial.objects.create(title="T", slug="t", published=True)
    tutorial.labs.add(lab)
    page = TutorialPage.objects.create(tutorial=tutorial, title="P")
    read = Step.objects.create(page=page, order=0, text_markdown="read", weight=1)
    server = Step.objects.create(page=page, order=1, text_markdown="server", weight=3)
    firewall = Step.objects.create(page=page, order=2, text_markdown="firewall", weight=2)
    ungraded = Step.objects.create(page=page, order=3, text_markdown="extra", weight=0)
    for step in (server, firewall):
        StepCheck.objects.create(step=step, machine="vm0", script="exit 0")

    def attempt() -> LabInstance:
        return LabInstance.objects.create(lab=lab, owner=student, status=LabInstance.Status.STOPPED)

    return {"tutorial": tutorial, "steps": (read, server, firewall, ungraded), "attempt": attempt}


def test_ticks_count_only_for_steps_without_a_check(course, student):
    read, server, _, _ = course["steps"]
    StepCompletion.objects.create(user=student, step=read)
    StepCompletion.objects.create(user=student, step=server)  # ticked before it had a check
    score = score_for(tutorial_progress(student, course["tutorial"]))
    assert score.given == round(1 / 6, 4)
    assert score.activity_progress == "InProgress"
    assert score.grading_progress == "Pending"
    assert score.comment == "1 of 4 steps done (0 of 2 checks passed)"


def test_the_best_attempt_counts_and_every_check_passed_is_fully_graded(course, student):
    read, server, firewall, _ = course["steps"]
    first, second = course["attempt"](), course["attempt"]()
    StepVerification.objects.create(instance=first, step=server)
    StepVerification.objects.create(instance=first, step=firewall)
    StepVerification.objects.create(instance=second, step=firewall)  # a later, weaker attempt
    StepCompletion.objects.create(user=student, step=read)
    progress = tutorial_progress(student, course["tutorial"])
    assert progress.attempt_id == first.pk
    score = score_for(progress)
    assert score.given == 1.0  # 1 + 3 + 2 of 6; the weight-0 step does not count
    assert score.grading_progress == "FullyGraded"
    assert score.activity_progress == "InProgress"  # the ungraded step is not done
    # The later attempt alone, as its own page shows it: only the firewall.
    assert tutorial_progress(student, course["tutorial"], instance=second).score == round(3 / 6, 4)


def test_one_check_missing_is_not_fully_graded(course, student):
    _, server, _, _ = course["steps"]
    StepVerification.objects.create(instance=course["attempt"](), step=server)
    score = score_for(tutorial_progress(student, course["tutorial"]))
    assert score.given == 0.5
    assert score.grading_progress == "Pending"
