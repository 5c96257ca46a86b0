"""How far along a tutorial a student is: steps ticked by hand, and steps verified by their checks.

A step without a check is done when the student ticks it; ticks are kept per user, not per lab
instance, so they survive restarting a lab. A step with a check is done only when its check passed,
and that belongs to one attempt (a lab instance), because it proves the state of that instance's
machines: a new instance starts unverified. The progress that counts (the tutorial's bar without an
instance, instructors' views, grades) is the student's best attempt: the instance whose verified
checks weigh most. Ticking a checked step by hand is refused (`StepIsChecked`), and a tick made before
a step got its check does not count.

Each step has a weight (default 1): the percent and the score are weighted. Every function here runs
a fixed number of queries, however many users, instances or steps there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied

from labs.models import LabInstance
from tutorials.models import Step, StepCompletion, StepVerification, Tutorial


class StepNotVisible(PermissionDenied):
    """The step belongs to a tutorial the user cannot see (unpublished, and they are not staff)."""


class StepIsChecked(Exception):
    """The step has a check: only the check can mark it done."""


@dataclass(frozen=True)
class Progress:
    ticked_step_ids: frozenset[int]  # the steps done: ticked (no check) or verified (with a check)
    total: int
    checked_step_ids: frozenset[int] = frozenset()
    verified_step_ids: frozenset[int] = frozenset()  # on `attempt_id`
    weights: dict[int, int] = field(default_factory=dict)  # steps whose weight is not 1
    attempt_id: int | None = None  # the instance whose verified checks count

    @property
    def ticked(self) -> int:
        return len(self.ticked_step_ids)

    @property
    def checks_passed(self) -> int:
        return len(self.verified_step_ids & self.checked_step_ids)

    @property
    def all_checks_passed(self) -> bool:
        return self.checked_step_ids <= self.verified_step_ids

    def _weight(self, step_id: int) -> int:
        return self.weights.get(step_id, 1)

    @property
    def total_weight(self) -> int:
        """The weight of every step; the steps are the ones counted in `total`."""
        return self.total + sum(weight - 1 for weight in self.weights.values())

    @property
    def done_weight(self) -> int:
        return sum(self._weight(step_id) for step_id in self.ticked_step_ids)

    @property
    def score(self) -> float:
        """The weighted share of done steps, 0 to 1 (4 digits); 0 without any weight to earn."""
        return round(self.done_weight / self.total_weight, 4) if self.total_weight else 0.0

    @property
    def percent(self) -> int:
        """Whole percent, weighted, rounded down so that 100 means every step is done.

        A tutorial without steps is at 0: there is nothing a student could have completed.
        """
        return self.done_weight * 100 // self.total_weight if self.total_weight else 0


@dataclass(frozen=True)
class _Steps:
    """A tutorial's steps: ids, the checked ones, and the weights that are not 1."""

    ids: set[int] = field(default_factory=set)
    checked: set[int] = field(default_factory=set)
    weights: dict[int, int] = field(default_factory=dict)

    def progress(self, ticked: set[int], verified: set[int], attempt_id: int | None) -> Progress:
        done = ((ticked - self.checked) | (verified & self.checked)) & self.ids
        return Progress(
            ticked_step_ids=frozenset(done),
            total=len(self.ids),
            checked_step_ids=frozenset(self.checked),
            verified_step_ids=frozenset(verified & self.checked),
            weights=dict(self.weights),
            attempt_id=attempt_id,
        )

    def best_attempt(self, verified_by_instance: dict[int, set[int]]) -> tuple[int | None, set[int]]:
        """The instance whose verified checks weigh most (the newest of equals), and those checks."""
        best: tuple[int, int] | None = None
        for instance_id, verified in verified_by_instance.items():
            weight = sum(self.weights.get(s, 1) for s in verified & self.checked)
            if best is None or (weight, instance_id) > best:
                best = (weight, instance_id)
        if best is None:
            return None, set()
        return best[1], verified_by_instance[best[1]]


def tutorial_progress(user, tutorial: Tutorial, instance: LabInstance | None = None) -> Progress:
    """`user`'s progress; with `instance`, its verified checks count, else the best attempt's."""
    return progress_by_tutorial(user, [tutorial], instance=instance)[tutorial.pk]


def progress_by_tutorial(
    user, tutorials: Iterable[Tutorial], instance: LabInstance | None = None
) -> dict[int, Progress]:
    """One user's progress in each of `tutorials` (e.g. a student's list of tutorials)."""
    steps = _steps_by_tutorial([tutorial.pk for tutorial in tutorials])
    all_ids = set().union(*(s.ids for s in steps.values())) if steps else set()
    ticked = set(StepCompletion.objects.filter(user=user, step__in=all_ids).values_list("step_id", flat=True))
    verifications = StepVerification.objects.filter(step__in=all_ids)
    verifications = (
        verifications.filter(instance=instance)
        if instance is not None
        else verifications.filter(instance__owner=user)
    )
    verified: dict[int, set[int]] = defaultdict(set)
    for instance_id, step_id in verifications.values_list("instance_id", "step_id"):
        verified[instance_id].add(step_id)
    result = {}
    for tutorial_id, tutorial_steps in steps.items():
        mine = {i: ids & tutorial_steps.ids for i, ids in verified.items() if ids & tutorial_steps.ids}
        if instance is not None:
            attempt_id, attempt = instance.pk, mine.get(instance.pk, set())
        else:
            attempt_id, attempt = tutorial_steps.best_attempt(mine)
        result[tutorial_id] = tutorial_steps.progress(ticked, attempt, attempt_id)
    return result


def progress_by_user(tutorial: Tutorial, user_ids: Iterable[int] | None = None) -> dict[int, Progress]:
    """Everyone's progress in one tutorial (their best attempts), for instructors.

    Without `user_ids`, the users who ticked or verified at least one of its steps; with them,
    exactly those.
    """
    steps = _steps_by_tutorial([tutorial.pk])[tutorial.pk]
    completions = StepCompletion.objects.filter(step__in=steps.ids)
    verifications = StepVerification.objects.filter(step__in=steps.checked)
    ticked: dict[int, set[int]] = defaultdict(set)
    verified: dict[int, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    if user_ids is not None:
        user_ids = list(user_ids)
        completions = completions.filter(user_id__in=user_ids)
        verifications = verifications.filter(instance__owner_id__in=user_ids)
        ticked.update({user_id: set() for user_id in user_ids})
    for user_id, step_id in completions.values_list("user_id", "step_id"):
        ticked[user_id].add(step_id)
    for user_id, instance_id, step_id in verifications.values_list(
        "instance__owner_id", "instance_id", "step_id"
    ):
        verified[user_id][instance_id].add(step_id)
        ticked.setdefault(user_id, set())
    result = {}
    for user_id, ids in ticked.items():
        attempt_id, attempt = steps.best_attempt(verified.get(user_id, {}))
        result[user_id] = steps.progress(ids, attempt, attempt_id)
    return result


def step_tick(*, user, step: Step) -> StepCompletion:
    """Mark `step` done for `user`; ticking twice keeps the first tick and its time.

    Raises StepIsChecked for a step with a check. Ticking counts as activity on the student's running
    lab; the caller records that with the labs app, which owns instances, so tutorials never depends
    on lab lifecycle code.
    """
    _check_visible(user, step)
    if hasattr(step, "step_check"):
        raise StepIsChecked("This step is checked automatically: press Check instead of ticking it.")
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


def _steps_by_tutorial(tutorial_ids: list[int]) -> dict[int, _Steps]:
    steps: dict[int, _Steps] = {tutorial_id: _Steps() for tutorial_id in tutorial_ids}
    rows = Step.objects.filter(page__tutorial__in=tutorial_ids).values_list(
        "page__tutorial_id", "pk", "weight", "step_check__id"
    )
    for tutorial_id, step_id, weight, check_id in rows:
        entry = steps[tutorial_id]
        entry.ids.add(step_id)
        if check_id is not None:
            entry.checked.add(step_id)
        if weight != 1:
            entry.weights[step_id] = weight
    return steps
