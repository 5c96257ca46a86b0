"""Progress = ticked steps / steps, per user and tutorial; ticking only what one may see."""

import pytest

from tutorials.models import Step, StepCompletion
from tutorials.progress import (
    Progress,
    StepNotVisible,
    progress_by_tutorial,
    progress_by_user,
    step_tick,
    step_untick,
    tutorial_progress,
)

pytestmark = pytest.mark.django_db


def test_nothing_ticked_is_zero_percent(student, published_tutorial):
    progress = tutorial_progress(student, published_tutorial)
    assert (progress.ticked, progress.total, progress.percent) == (0, 3, 0)


def test_percent_counts_steps_across_pages_and_rounds_down(student, published_tutorial, steps_of):
    first, second, third = steps_of(published_tutorial)
    step_tick(user=student, step=first)
    step_tick(user=student, step=third)
    progress = tutorial_progress(student, published_tutorial)
    assert progress.ticked_step_ids == {first.pk, third.pk}
    assert progress.percent == 66
    step_tick(user=student, step=second)
    assert tutorial_progress(student, published_tutorial).percent == 100


def test_a_tutorial_without_steps_is_at_zero_percent(student, make_tutorial):
    empty = make_tutorial("empty", steps_per_page=(0,))
    assert tutorial_progress(student, empty) == Progress(frozenset(), 0)
    assert tutorial_progress(student, empty).percent == 0


def test_ticking_twice_keeps_one_tick_and_its_first_time(student, published_tutorial, steps_of):
    step = steps_of(published_tutorial)[0]
    first = step_tick(user=student, step=step)
    again = step_tick(user=student, step=step)
    assert again.pk == first.pk
    assert again.completed_at == first.completed_at
    assert StepCompletion.objects.filter(user=student, step=step).count() == 1


def test_unticking_is_idempotent(student, published_tutorial, steps_of):
    step = steps_of(published_tutorial)[0]
    step_tick(user=student, step=step)
    assert step_untick(user=student, step=step) is True
    assert step_untick(user=student, step=step) is False
    assert tutorial_progress(student, published_tutorial).ticked == 0


def test_students_cannot_tick_or_untick_steps_of_unpublished_tutorials(student, draft_tutorial, steps_of):
    step = steps_of(draft_tutorial)[0]
    with pytest.raises(StepNotVisible):
        step_tick(user=student, step=step)
    with pytest.raises(StepNotVisible):
        step_untick(user=student, step=step)
    assert not StepCompletion.objects.exists()


def test_instructors_can_tick_steps_of_drafts_to_try_them(instructor, draft_tutorial, steps_of):
    step_tick(user=instructor, step=steps_of(draft_tutorial)[0])
    assert tutorial_progress(instructor, draft_tutorial).percent == 100


def test_one_students_ticks_never_change_anothers_progress(
    student, other_student, published_tutorial, steps_of
):
    first, second, _ = steps_of(published_tutorial)
    step_tick(user=other_student, step=first)
    step_tick(user=other_student, step=second)
    step_untick(user=student, step=first)  # must not remove bob's tick
    assert tutorial_progress(student, published_tutorial).ticked == 0
    assert tutorial_progress(other_student, published_tutorial).ticked == 2


def test_ticks_in_other_tutorials_do_not_count(student, published_tutorial, make_tutorial, steps_of):
    other = make_tutorial("other")
    step_tick(user=student, step=steps_of(other)[0])
    assert tutorial_progress(student, published_tutorial).ticked == 0


def test_progress_survives_deleting_nothing_but_follows_step_deletion(student, published_tutorial, steps_of):
    first, second, _ = steps_of(published_tutorial)
    step_tick(user=student, step=first)
    step_tick(user=student, step=second)
    Step.objects.filter(pk=second.pk).delete()
    progress = tutorial_progress(student, published_tutorial)
    assert (progress.ticked, progress.total, progress.percent) == (1, 2, 50)


def test_progress_by_user_lists_everyone_who_started(
    student, other_student, instructor, published_tutorial, django_assert_num_queries, steps_of
):
    first, second, third = steps_of(published_tutorial)
    step_tick(user=student, step=first)
    for step in (first, second, third):
        step_tick(user=other_student, step=step)
    with django_assert_num_queries(2):
        progress = progress_by_user(published_tutorial)
    assert {user_id: p.percent for user_id, p in progress.items()} == {student.pk: 33, other_student.pk: 100}


def test_progress_by_user_can_include_users_who_have_not_started(student, instructor, published_tutorial):
    progress = progress_by_user(published_tutorial, user_ids=[student.pk, instructor.pk])
    assert progress == {student.pk: Progress(frozenset(), 3), instructor.pk: Progress(frozenset(), 3)}


def test_progress_by_tutorial_takes_three_queries_for_any_number(
    student, published_tutorial, django_assert_num_queries, make_tutorial, steps_of
):
    tutorials = [published_tutorial, *(make_tutorial(f"t{number}") for number in range(4))]
    step_tick(user=student, step=steps_of(tutorials[2])[0])
    # Steps (with their checks and weights), ticks, verified checks.
    with django_assert_num_queries(3):
        progress = progress_by_tutorial(student, tutorials)
    assert [progress[t.pk].percent for t in tutorials] == [0, 0, 33, 0, 0]
