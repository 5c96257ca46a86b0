"""What an instructor sees of a course activity: its learners' progress and the scores sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lti.models import ContextMembership, GradeLink, ResourceLink
from lti.resource_links import graded_tutorial
from tutorials.models import Tutorial
from tutorials.progress import Progress, progress_by_user


@dataclass(frozen=True)
class LearnerRow:
    user: Any
    progress: Progress | None
    last_sent_score: float | None


@dataclass(frozen=True)
class CourseProgress:
    tutorial: Tutorial | None
    learners: list[LearnerRow]


def course_progress(link: ResourceLink) -> CourseProgress:
    """The learners who launched from the activity's course, with their progress in its tutorial."""
    memberships = []
    if link.context_id:
        memberships = list(
            ContextMembership.objects.filter(
                platform_id=link.platform_id, context_id=link.context_id, is_instructor=False
            )
            .select_related("user")
            .order_by("user__last_name", "user__first_name", "user__username")
        )
    tutorial = graded_tutorial(link)
    user_ids = [membership.user_id for membership in memberships]
    progress = progress_by_user(tutorial, user_ids) if tutorial is not None else {}
    sent = dict(GradeLink.objects.filter(resource_link=link).values_list("user_id", "last_sent_score"))
    rows = [LearnerRow(m.user, progress.get(m.user_id), sent.get(m.user_id)) for m in memberships]
    return CourseProgress(tutorial=tutorial, learners=rows)
