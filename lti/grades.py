"""Tutorial progress as a grade in the platform's gradebook (LTI Assignment and Grade Services 2.0).

A learner's launch with the AGS claim makes a GradeLink (the line item to post to). Tutorials know
nothing of gradebooks: `manage.py send_grades` derives each linked learner's score from their
progress (`queue_changed_scores`), queues a ScoreSubmission for every score that differs from the
last one queued, delivers the queue (`deliver_due`), retrying with backoff while the platform is
unreachable, and records the last score sent so the same score is never sent twice.

The score is the weighted fraction of steps done (scoreGiven 0-1 of scoreMaximum 1): a step with a
check is done when its check passed on the student's best attempt, another when it is ticked
(tutorials/progress.py). activityProgress is Started (nothing done), InProgress or Completed (all
done); gradingProgress is FullyGraded once complete (with checks: once every check passed), else
LTI_PARTIAL_GRADING_PROGRESS, FullyGraded by default because Moodle discards the scoreGiven of any
other gradingProgress (README.md, "LTI 1.3").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.core.cache import cache
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException, LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.service_connector import ServiceConnector

from lti.accounts import LaunchUser
from lti.launch import Launch
from lti.models import GradeLink, ResourceLink, ScoreSubmission
from lti.platform_http import platform_session
from lti.resource_links import graded_tutorial
from lti.toolconf import registration_for
from tutorials.progress import Progress, progress_by_user, tutorial_progress

logger = logging.getLogger("lti.grades")

AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
LINE_ITEM_TAG = "tutorial-progress"
# Answers worth trying again later; any other 4xx means the platform will not take this score.
RETRYABLE_STATUSES = {401, 408, 425, 429}

Status = ScoreSubmission.Status


@dataclass(frozen=True)
class Score:
    given: float
    activity_progress: str
    grading_progress: str
    comment: str


def score_for(progress: Progress) -> Score:
    """The score of a student's progress: the weighted share of done steps, where a checked step
    counts only once its check passed (on the best attempt) and ticks count for the other steps.
    With checks, the grade is final (FullyGraded) once every check has passed."""
    complete = progress.total > 0 and progress.ticked >= progress.total
    if complete:
        activity = "Completed"
    elif progress.ticked:
        activity = "InProgress"
    else:
        activity = "Started"
    final = progress.all_checks_passed if progress.checked_step_ids else complete
    comment = f"{progress.ticked} of {progress.total} steps done"
    if progress.checked_step_ids:
        comment += f" ({progress.checks_passed} of {len(progress.checked_step_ids)} checks passed)"
    return Score(
        given=progress.score,
        activity_progress=activity,
        grading_progress="FullyGraded" if final else settings.LTI_PARTIAL_GRADING_PROGRESS,
        comment=comment,
    )


# --- Queueing --------------------------------------------------------------------------------------


def link_grades_for_launch(
    launch: Launch, launch_user: LaunchUser, resource_link: ResourceLink
) -> GradeLink | None:
    """Remember where this learner's progress goes, when the launch allows posting scores."""
    ags = launch.claims.get(AGS_CLAIM)
    if not isinstance(ags, dict) or launch_user.is_instructor:
        return None
    scopes = [scope for scope in ags.get("scope") or [] if isinstance(scope, str)]
    lineitem, lineitems = str(ags.get("lineitem") or ""), str(ags.get("lineitems") or "")
    if SCORE_SCOPE not in scopes or not (lineitem or (lineitems and LINEITEM_SCOPE in scopes)):
        return None
    tutorial = graded_tutorial(resource_link)
    if tutorial is None:
        return None
    values: dict[str, Any] = {
        "platform": launch.platform,
        "tutorial": tutorial,
        "lti_user_id": launch.sub,
        "lineitems_url": lineitems,
        "scopes": scopes,
    }
    if lineitem:  # else keep a line item found or created earlier through `lineitems`
        values["lineitem_url"] = lineitem
    link, _ = GradeLink.objects.update_or_create(
        resource_link=resource_link, user=launch_user.user, defaults=values
    )
    queue_score(link)
    return link


def queue_changed_scores(*, now: datetime | None = None) -> int:
    """Queue the score of every linked learner whose progress no longer gives the last score queued
    for them (whatever became of that one: sent, skipped, failed, or still waiting). Returns how many
    were queued. Reads each tutorial's progress in one pass (tutorials.progress.progress_by_user)."""
    latest = ScoreSubmission.objects.filter(grade_link=OuterRef("pk")).order_by("-id")
    links = GradeLink.objects.select_related("user", "tutorial").annotate(
        latest_given=Subquery(latest.values("score_given")[:1]),
        latest_activity=Subquery(latest.values("activity_progress")[:1]),
        latest_grading=Subquery(latest.values("grading_progress")[:1]),
    )
    by_tutorial: dict[int, list[GradeLink]] = {}
    for link in links:
        by_tutorial.setdefault(link.tutorial_id, []).append(link)
    queued = 0
    for tutorial_links in by_tutorial.values():
        progress = progress_by_user(tutorial_links[0].tutorial, {link.user_id for link in tutorial_links})
        for link in tutorial_links:
            score = score_for(progress[link.user_id])
            last = (link.latest_given, link.latest_activity, link.latest_grading)
            if last != (score.given, score.activity_progress, score.grading_progress):
                queued += queue_score(link, progress[link.user_id], now=now)
    return queued


def queue_score(link: GradeLink, progress: Progress | None = None, *, now: datetime | None = None) -> bool:
    """Queue the current score of `link`; False when there is nothing new to send."""
    now = now or timezone.now()
    score = score_for(progress if progress is not None else tutorial_progress(link.user, link.tutorial))
    values = {
        "score_given": score.given,
        "activity_progress": score.activity_progress,
        "grading_progress": score.grading_progress,
        "comment": score.comment,
        "timestamp": now,
    }
    # A score still waiting takes the newer values: one delivery for a burst of ticks. The UPDATE
    # matches nothing once a worker has claimed the row, and then a new row is queued after it.
    if ScoreSubmission.objects.filter(grade_link=link, status=Status.PENDING).update(**values):
        return True
    in_flight = ScoreSubmission.objects.filter(grade_link=link, status=Status.SENDING).exists()
    if not in_flight and _already_sent(link, score.given, score.activity_progress, score.grading_progress):
        return False
    ScoreSubmission.objects.create(grade_link=link, next_attempt_at=now, **values)
    return True


def _already_sent(link: GradeLink, given: float, activity: str, grading: str) -> bool:
    return (
        link.last_sent_at is not None
        and link.last_sent_score == given
        and link.last_sent_activity_progress == activity
        and link.last_sent_grading_progress == grading
    )


# --- Delivery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    submission_id: int
    outcome: str  # one of ScoreSubmission.Status, or "retry"
    detail: str = ""


class PlatformUnavailable(Exception):
    """Try again later: the platform did not answer, or answered 5xx (or 401/429)."""


class PlatformRefused(Exception):
    """The platform will not take this score (4xx): retrying cannot help."""


def retry_delay(attempts: int) -> timedelta:
    seconds = settings.LTI_GRADE_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.LTI_GRADE_RETRY_MAX_SECONDS))


def _lease() -> timedelta:
    # A row claimed this long ago belongs to a worker that died: a delivery is two HTTP calls at most
    # (token and score), plus one lookup of the line item.
    return timedelta(seconds=max(60.0, 4 * settings.LTI_HTTP_TIMEOUT_SECONDS))


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> list[Delivery]:
    """Queue the scores progress changed (`queue_changed_scores`), then send those that are due. Each
    row is claimed with a conditional UPDATE first, so workers running at once never send the same
    row."""
    now = now or timezone.now()
    queue_changed_scores(now=now)
    due = Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Status.SENDING, claimed_at__lt=now - _lease()
    )
    candidates = list(
        ScoreSubmission.objects.filter(due).order_by("timestamp", "id").values_list("pk", flat=True)[:limit]
    )
    deliveries = []
    for pk in candidates:
        claimed = ScoreSubmission.objects.filter(due, pk=pk).update(
            status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
        if claimed:
            deliveries.append(_deliver(pk, now=now))
    return deliveries


def _deliver(pk: int, *, now: datetime) -> Delivery:
    submission = ScoreSubmission.objects.select_related("grade_link__platform").get(pk=pk)
    link = submission.grade_link
    given, activity, grading = (
        submission.score_given,
        submission.activity_progress,
        submission.grading_progress,
    )
    if _already_sent(link, given, activity, grading):
        _finish(submission, Status.SKIPPED, now=now)
        return Delivery(pk, Status.SKIPPED)
    # Moodle keeps whole seconds and refuses a score not newer than the one it holds (409).
    timestamp = submission.timestamp
    if link.last_sent_timestamp is not None and timestamp < link.last_sent_timestamp + timedelta(seconds=1):
        timestamp = link.last_sent_timestamp + timedelta(seconds=1)
    try:
        post_score(link, submission, timestamp=timestamp)
    except PlatformUnavailable as error:
        return _retry_or_fail(submission, str(error), now=now)
    except PlatformRefused as error:
        logger.warning("LTI score %s refused by platform %s: %s", pk, link.platform_id, error)
        _finish(submission, Status.FAILED, now=now, error=str(error))
        return Delivery(pk, Status.FAILED, str(error))
    # Recorded only if no newer score of this link was recorded meanwhile (two workers, two rows).
    GradeLink.objects.filter(pk=link.pk).filter(
        Q(last_sent_timestamp__isnull=True) | Q(last_sent_timestamp__lt=timestamp)
    ).update(
        last_sent_score=given,
        last_sent_activity_progress=activity,
        last_sent_grading_progress=grading,
        last_sent_timestamp=timestamp,
        last_sent_at=now,
    )
    _finish(submission, Status.SENT, now=now)
    return Delivery(pk, Status.SENT)


def _finish(submission: ScoreSubmission, status: str, *, now: datetime, error: str = "") -> None:
    ScoreSubmission.objects.filter(pk=submission.pk).update(
        status=status,
        sent_at=now if status == Status.SENT else None,
        last_error=error[:2000],
        claimed_at=None,
    )


def _retry_or_fail(submission: ScoreSubmission, error: str, *, now: datetime) -> Delivery:
    attempts = submission.attempts
    if attempts >= settings.LTI_GRADE_MAX_ATTEMPTS:
        logger.warning("LTI score %s given up after %s attempts: %s", submission.pk, attempts, error)
        _finish(submission, Status.FAILED, now=now, error=error)
        return Delivery(submission.pk, Status.FAILED, error)
    ScoreSubmission.objects.filter(pk=submission.pk).update(
        status=Status.PENDING,
        next_attempt_at=now + retry_delay(attempts),
        last_error=error[:2000],
        claimed_at=None,
    )
    logger.info("LTI score %s not delivered (attempt %s), will retry: %s", submission.pk, attempts, error)
    return Delivery(submission.pk, "retry", error)


def post_score(link: GradeLink, submission: ScoreSubmission, *, timestamp: datetime) -> None:
    """POST the score to the line item's scores endpoint with a client-credentials token (pylti1p3's
    ServiceConnector signs the assertion with our current key)."""
    connector = PlatformConnector(
        registration_for(link.platform), platform_session(), platform_id=link.platform_id
    )
    grade = (
        Grade()
        .set_score_given(submission.score_given)
        .set_score_maximum(submission.score_maximum)
        .set_activity_progress(submission.activity_progress)
        .set_grading_progress(submission.grading_progress)
        .set_timestamp(timestamp.isoformat(timespec="milliseconds"))
        .set_user_id(link.lti_user_id)
        .set_comment(submission.comment)
    )
    try:
        lineitem_url = link.lineitem_url or _find_or_create_line_item(connector, link)
        AssignmentsGradesService(connector, {"scope": [SCORE_SCOPE], "lineitem": lineitem_url}).put_grade(
            grade
        )
    except LtiServiceException as error:
        status = error.response.status_code
        if status == 401:
            # A cached token the platform no longer accepts: fetch a new one next time.
            connector.forget_tokens()
        message = f"HTTP {status} from {error.response.url}"
        if status >= 500 or status in RETRYABLE_STATUSES:
            raise PlatformUnavailable(message) from error
        raise PlatformRefused(message) from error
    except requests.RequestException as error:
        raise PlatformUnavailable(f"{type(error).__name__} talking to the platform") from error
    except LtiException as error:
        raise PlatformRefused(str(error)) from error


def _find_or_create_line_item(connector: PlatformConnector, link: GradeLink) -> str:
    """The launch named only the line item container: find our column in it, or create it."""
    service = AssignmentsGradesService(
        connector, {"scope": [LINEITEM_SCOPE], "lineitems": link.lineitems_url, "lineitem": ""}
    )
    resource_link = link.resource_link
    wanted = (
        LineItem()
        .set_tag(LINE_ITEM_TAG)
        .set_resource_link_id(resource_link.resource_link_id)
        .set_resource_id(link.tutorial.slug)
        .set_label(f"{resource_link.title or link.tutorial.title} (progress)")
        .set_score_maximum(100)
    )
    line_item = service.find_or_create_lineitem(wanted, find_by="resource_link_id")
    url = line_item.get_id()
    if not url:
        raise PlatformRefused("the platform created a line item without an id")
    GradeLink.objects.filter(pk=link.pk).update(lineitem_url=url)
    return url


class PlatformConnector(ServiceConnector):
    """pylti1p3's client-credentials connector, keeping access tokens in Django's cache.

    The two token methods are the hooks pylti1p3 leaves to subclasses (its base class raises
    NotImplementedError). Keys carry a per-platform generation, so `forget_tokens` drops every
    token of the platform by moving to the next generation, without knowing how the library
    derives its scope keys.
    """

    def __init__(self, registration: Any, session: requests.Session, *, platform_id: int) -> None:
        super().__init__(registration, session)
        self.platform_id = platform_id

    def _generation_key(self) -> str:
        return f"lti-token-generation:{self.platform_id}"

    def _token_key(self, scope_key: str) -> str:
        generation = cache.get_or_set(self._generation_key(), 0, timeout=None)
        return f"lti-token:{self.platform_id}:{generation}:{scope_key}"

    def _get_cached_access_token(self, scope_key: str) -> str | None:
        return cache.get(self._token_key(scope_key))

    def _cache_access_token(self, scope_key: str, access_token: str, expires_in: float) -> None:
        # Ten seconds early, so a token never expires between this check and the platform's.
        cache.set(self._token_key(scope_key), access_token, max(1, math.floor(expires_in - 10)))

    def forget_tokens(self) -> None:
        try:
            cache.incr(self._generation_key())
        except ValueError:  # never cached, or evicted: nothing to forget
            cache.set(self._generation_key(), 1, timeout=None)
