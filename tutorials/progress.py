"""Which steps a student ticked, and how far along a tutorial that puts them.

Progress is kept per user and step, not per lab instance, so it survives restarting a lab.
Every function here runs a fixed number of queries, however many users or steps there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied

from tutorials.models import Step, StepCompletion, Tutorial


class StepNotVisible(PermissionDenied):
    """The step belongs to a tutorial the user cannot see (unpublished, and they are not staff)."""


@dataclass(frozen=True)
class Progress:
    ticked_step_ids: frozenset[int]
    total: int

    @property
    def ticked(self) -> int:
        return len(self.ticked_step_ids)

    @property
    def percent(self) -> int:
        """Whole percent, rounded down so that 100 means every step is ticked.

        A tutorial without steps is at 0: there is nothing a student could have completed.
        """
        return self.ticked * 100 // self.total if self.total else 0


def tutorial_progress(user, tutorial: Tutorial) -> Progress:
    return progress_by_tutorial(user, [tutorial])[tutorial.pk]


def progress_by_tutorial(user, tutorials: Iterable[Tutorial]) -> dict[int, Progress]:
    """One user's progress in each of `tutorials` (e.g. a student's list of tutorials)."""
    step_ids = _step_ids_by_tutorial([tutorial.pk for tutorial in tutorials])
    ticked = set(
        StepCompletion.objects.filter(user=user, step__page__tutorial__in=list(step_ids)).values_list(
            "step_id", flat=True
        )
    )
    return {
        tutorial_id: Progress(frozenset(ticked & steps), len(steps))
        for tutorial_id, steps in step_ids.items()
    }


def progress_by_user(tutorial: Tutorial, user_ids: Iterable[int] | None = None) -> dict[int, Progress]:
    """Everyone's progress in one tutorial, for instructors.

    Without `user_ids`, the users who ticked at least one of its steps; with them, exactly those.
    """
    steps = _step_ids_by_tutorial([tutorial.pk])[tutorial.pk]
    completions = StepCompletion.objects.filter(step__page__tutorial=tutorial)
    ticked: dict[int, set[int]] = defaultdict(set)
    if user_ids is not None:
        user_ids = list(user_ids)
        completions = completions.filter(user_id__in=user_ids)
        ticked.update({user_id: set() for user_id in user_ids})
    for user_id, step_id in completions.values_list("user_id", "step_id"):
        ticked[user_id].add(step_id)
    return {user_id: Progress(frozenset(ids & steps), len(steps)) for user_id, ids in ticked.items()}


def step_tick(*, user, step: Step) -> StepCompletion:
    """Mark `step` done for `user`; ticking twice keeps the first tick and its time.

    Ticking counts as activity on the student's running lab; the caller records that with the
    labs app, which owns instances, so tutorials never depends on lab lifecycle code.
    """
    _check_visible(user, step)
    # get_or_create falls back to get() when a concurrent request inserted the same tick first.
    completion, _ = StepCompletion.objects.get_or_create(user=user, step=step)
    return completion


def step_untick(*, user, step: Step) -> bool:
    """Clear the tick; True if there was one. Unticking an unticked step is not an error."""
    _check_visible(user, step)
    deleted, _ = StepCompletion.objects.filter(user=user, step=step).delete()
    return deleted > 0


def _check_visible(user, step: Step) -> None:
    visible = Tutorial.objects.visible_to(user).filter(pages__steps=step).exists()
    if not visible:
        raise StepNotVisible("This step belongs to a tutorial that is not published.")


def _step_ids_by_tutorial(tutorial_ids: list[int]) -> dict[int, set[int]]:
    step_ids: dict[int, set[int]] = {tutorial_id: set() for tutorial_id in tutorial_ids}
    rows = Step.objects.filter(page__tutorial__in=tutorial_ids).values_list("page__tutorial_id", "pk")
    for tutorial_id, step_id in rows:
        step_ids[tutorial_id].add(step_id)
    return step_ids
