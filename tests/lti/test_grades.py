"""Tutorial progress to the fake platform's gradebook: send_grades derives the scores from progress,
queues those that changed and sends them; the tutorials' endpoints only record progress."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.core.management import call_command
from django.utils import timezone

from lti.grades import deliver_due, queue_changed_scores
from lti.models import GradeLink, ScoreSubmission
from tests.lti.fake_platform import AGS_CLAIM, CLIENT_ID, INSTRUCTOR, SCORE_SCOPE
from tutorials.models import Step

pytestmark = pytest.mark.django_db

LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"


@pytest.fixture
def graded_launch(client, platform, lab, do_launch, fake_platform):
    """A learner launched with the AGS claim; the queue holds their starting score."""

    def run(**overrides):
        ags = {
            "scope": [LINEITEM_SCOPE, SCORE_SCOPE],
            "lineitem": f"{fake_platform.base_url}/lineitems/1?type_id=5",
            "lineitems": f"{fake_platform.base_url}/lineitems?type_id=5",
        }
        response = do_launch(client, **{AGS_CLAIM: ags, **overrides})
        assert response.status_code == 302
        return GradeLink.objects.get()

    return run


def tick(client, step: Step, method: str = "post"):
    response = getattr(client, method)(f"/api/tutorials/networking/steps/{step.pk}/tick/")
    assert response.status_code == 200, response.content
    return response


def steps() -> list[Step]:
    return list(Step.objects.filter(page__tutorial__slug="networking").order_by("order"))


def scores_posted(fake_platform):
    return fake_platform.received("/lineitems/1/scores")


def test_launch_with_ags_links_the_learner_and_queues_their_start(graded_launch, fake_platform):
    link = graded_launch()
    assert link.tutorial.slug == "networking"
    assert link.lti_user_id == "moodle-user-7"
    (queued,) = ScoreSubmission.objects.all()
    assert (queued.score_given, queued.activity_progress) == (0.0, "Started")
    assert not fake_platform.received("/token") and not scores_posted(fake_platform)  # sent later


def test_tick_sends_the_progress_with_a_client_credentials_token(client, graded_launch, fake_platform):
    link = graded_launch()
    tick(client, steps()[0])
    assert queue_changed_scores() == 1
    assert ScoreSubmission.objects.filter(status="pending").count() == 1  # the start was replaced
    deliveries = deliver_due()
    assert [d.outcome for d in deliveries] == ["sent"]

    (token_request,) = fake_platform.received("/token")
    form = token_request.form()
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"] == SCORE_SCOPE
    tool_keys = jwt.PyJWKSet.from_dict(client.get("/lti/jwks/").json())
    assertion = form["client_assertion"]
    key = next(k for k in tool_keys.keys if k.key_id == jwt.get_unverified_header(assertion)["kid"])
    claims = jwt.decode(assertion, key.key, algorithms=["RS256"], audience=f"{fake_platform.base_url}/token")
    assert claims["iss"] == claims["sub"] == CLIENT_ID

    (score,) = scores_posted(fake_platform)
    assert score.headers["Content-Type"] == SCORE_MEDIA_TYPE
    assert score.headers["Authorization"] == "Bearer access-1"
    body = score.json()
    assert body["userId"] == "moodle-user-7"
    assert (body["scoreGiven"], body["scoreMaximum"]) == (0.25, 1.0)
    assert body["activityProgress"] == "InProgress"
    assert body["gradingProgress"] == "FullyGraded"
    assert body["timestamp"].endswith("+00:00")
    link.refresh_from_db()
    assert link.last_sent_score == 0.25
    assert link.last_sent_at is not None


def test_completed_tutorial_is_completed_and_fully_graded(client, graded_launch, fake_platform):
    graded_launch()
    for step in steps():
        tick(client, step)
    deliver_due()
    (score,) = scores_posted(fake_platform)
    body = score.json()
    assert (body["scoreGiven"], body["activityProgress"], body["gradingProgress"]) == (
        1.0,
        "Completed",
        "FullyGraded",
    )


def test_partial_scores_can_be_sent_as_pending(client, graded_launch, fake_platform, settings):
    settings.LTI_PARTIAL_GRADING_PROGRESS = "Pending"
    graded_launch()
    tick(client, steps()[0])
    deliver_due()
    assert scores_posted(fake_platform)[0].json()["gradingProgress"] == "Pending"


def test_the_tick_endpoint_queues_nothing_itself(client, graded_launch, fake_platform):
    graded_launch()
    (start,) = ScoreSubmission.objects.all()
    tick(client, steps()[0])
    (still,) = ScoreSubmission.objects.all()
    assert (still.pk, still.score_given) == (start.pk, 0.0)
    assert queue_changed_scores() == 1
    assert ScoreSubmission.objects.get().score_given == 0.25  # the waiting start took the new score
    assert queue_changed_scores() == 0


def test_the_same_score_is_never_sent_twice(client, graded_launch, fake_platform):
    link = graded_launch()
    first, second = steps()[:2]
    tick(client, first)
    deliver_due()
    tick(client, first)  # ticking again changes nothing
    tick(client, first, "delete")
    tick(client, first)  # back where it was when it was sent
    assert queue_changed_scores() == 0
    tick(client, second)
    assert queue_changed_scores() == 1  # 0.5 waits...
    tick(client, second, "delete")  # ...and is back at the 0.25 sent before it goes
    deliver_due()
    assert len(scores_posted(fake_platform)) == 1
    assert ScoreSubmission.objects.filter(status="skipped").count() == 1
    tick(client, steps()[1])
    deliver_due()
    assert [s.json()["scoreGiven"] for s in scores_posted(fake_platform)] == [0.25, 0.5]
    link.refresh_from_db()
    assert link.last_sent_score == 0.5


def test_platform_503_is_retried_with_backoff_and_recorded_when_sent(client, graded_launch, fake_platform):
    link = graded_launch()
    tick(client, steps()[0])
    fake_platform.responses["/lineitems/1/scores"] = [503]
    now = timezone.now()
    (first,) = deliver_due(now=now)
    assert first.outcome == "retry"
    queued = ScoreSubmission.objects.get(status="pending")
    assert queued.attempts == 1
    assert queued.next_attempt_at == now + timedelta(seconds=30)
    assert "HTTP 503" in queued.last_error
    assert deliver_due(now=now + timedelta(seconds=10)) == []  # not due yet
    (second,) = deliver_due(now=now + timedelta(seconds=31))
    assert second.outcome == "sent"
    assert len(scores_posted(fake_platform)) == 2
    link.refresh_from_db()
    assert link.last_sent_score == 0.25
    assert ScoreSubmission.objects.get(pk=queued.pk).status == "sent"


def test_token_endpoint_down_then_platform_unreachable_loses_nothing(
    client, graded_launch, fake_platform, settings
):
    graded_launch()
    tick(client, steps()[0])
    fake_platform.responses["/token"] = [503]
    now = timezone.now()
    assert deliver_due(now=now)[0].outcome == "retry"
    assert not scores_posted(fake_platform)
    # The platform's host is gone altogether: still queued, with a longer wait.
    link = GradeLink.objects.get()
    link.platform.auth_token_url = "http://127.0.0.1:9/token"
    link.platform.save()
    assert deliver_due(now=now + timedelta(minutes=1))[0].outcome == "retry"
    queued = ScoreSubmission.objects.get(status="pending")
    assert queued.next_attempt_at == now + timedelta(minutes=1, seconds=60)
    settings.LTI_GRADE_MAX_ATTEMPTS = 2
    tick(client, steps()[1])
    queue_changed_scores()  # the waiting score takes the newer progress
    assert ScoreSubmission.objects.get(status="pending").score_given == 0.5


def test_a_score_the_platform_refuses_fails_without_retrying(client, graded_launch, fake_platform):
    graded_launch()
    tick(client, steps()[0])
    fake_platform.responses["/lineitems/1/scores"] = [400]
    assert deliver_due()[0].outcome == "failed"
    assert ScoreSubmission.objects.get(status="failed").attempts == 1
    assert deliver_due(now=timezone.now() + timedelta(days=1)) == []
    assert ScoreSubmission.objects.count() == 1  # the same progress is not queued again


def test_a_claimed_score_is_not_sent_by_a_second_worker_until_its_lease_expires(
    client, graded_launch, fake_platform
):
    graded_launch()
    now = timezone.now()
    ScoreSubmission.objects.update(status="sending", claimed_at=now)
    assert deliver_due(now=now + timedelta(seconds=5)) == []
    assert [d.outcome for d in deliver_due(now=now + timedelta(minutes=5))] == ["sent"]


def test_instructors_and_launches_without_ags_get_no_grades(client, platform, lab, do_launch, fake_platform):
    ags = {"scope": [SCORE_SCOPE], "lineitem": f"{fake_platform.base_url}/lineitems/1"}
    do_launch(client, roles=[INSTRUCTOR], sub="teacher", **{AGS_CLAIM: ags})
    do_launch(client, sub="learner-without-ags")
    do_launch(client, sub="learner-without-score-scope", **{AGS_CLAIM: {**ags, "scope": []}})
    assert not GradeLink.objects.exists()


def test_send_grades_command(client, graded_launch, fake_platform, capsys):
    graded_launch()
    tick(client, steps()[0])
    call_command("send_grades")
    assert "1 sent" in capsys.readouterr().out
    assert len(scores_posted(fake_platform)) == 1


def test_a_token_the_platform_refuses_is_fetched_again_on_the_next_attempt(
    client, graded_launch, fake_platform
):
    graded_launch()
    tick(client, steps()[0])
    now = timezone.now()
    assert [d.outcome for d in deliver_due(now=now)] == ["sent"]
    assert len(fake_platform.received("/token")) == 1
    # The cached token works for the next score...
    tick(client, steps()[1])
    assert [d.outcome for d in deliver_due(now=now + timedelta(seconds=2))] == ["sent"]
    assert len(fake_platform.received("/token")) == 1
    # ...until the platform stops accepting it: the score waits, and the next try gets a new token.
    tick(client, steps()[2])
    fake_platform.responses["/lineitems/1/scores"] = [401]
    assert [d.outcome for d in deliver_due(now=now + timedelta(seconds=4))] == ["retry"]
    assert len(fake_platform.received("/token")) == 1
    assert [d.outcome for d in deliver_due(now=now + timedelta(minutes=5))] == ["sent"]
    assert len(fake_platform.received("/token")) == 2
