"""Deep linking (LTI Deep Linking 2.0): an instructor adding an activity picks a lab and tutorial;
the answer is a signed LtiDeepLinkingResponse with one ltiResourceLink item carrying the choice as
custom parameters, posted by the browser back to the platform."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils import timezone
from pylti1p3.deep_link import DeepLink
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.lineitem import LineItem

from labs.models import Lab
from lti.accounts import LaunchUser
from lti.launch import Launch, LaunchRefused, tool_url
from lti.models import DeepLinkingRequest
from lti.toolconf import registration_for
from tutorials.models import Tutorial

DEEP_LINKING_SETTINGS_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
# Time an instructor has to pick a lab.
PICK_TIME = timedelta(hours=1)
# Gradebook column the platform creates for a graded activity: progress 0-100 %.
LINE_ITEM_MAXIMUM = 100
LINE_ITEM_TAG = "tutorial-progress"


class DeepLinkingUnavailable(LaunchRefused):
    pass


def start_deep_linking(launch: Launch, launch_user: LaunchUser) -> DeepLinkingRequest:
    if not launch_user.is_instructor:
        raise DeepLinkingUnavailable(
            "not_instructor", "Only the course's instructors can choose a lab.", platform=launch.platform
        )
    context = launch.claim("context") or {}
    return DeepLinkingRequest.objects.create(
        token=secrets.token_urlsafe(32),
        platform=launch.platform,
        deployment_id=launch.deployment_id,
        user=launch_user.user,
        settings=launch.claims[DEEP_LINKING_SETTINGS_CLAIM],
        context_id=str(context.get("id") or "")[:255] if isinstance(context, dict) else "",
    )


def open_request(token: str, *, now: datetime | None = None) -> DeepLinkingRequest | None:
    """The unused, unexpired deep-linking request of `token`."""
    now = now or timezone.now()
    return (
        DeepLinkingRequest.objects.select_related("platform")
        .filter(token=token, used_at__isnull=True, created_at__gt=now - PICK_TIME)
        .first()
    )


def pickable_labs() -> QuerySet[Lab]:
    tutorials = Tutorial.objects.published().order_by("title")
    return Lab.objects.published().prefetch_related(Prefetch("tutorials", queryset=tutorials))


@dataclass(frozen=True)
class DeepLinkingResponse:
    return_url: str
    jwt: str


def answer(request: DeepLinkingRequest, *, lab: Lab, tutorial: Tutorial | None) -> DeepLinkingResponse:
    """Sign the response for `lab` (and `tutorial`) and use the request up (a pick is final)."""
    used = DeepLinkingRequest.objects.filter(pk=request.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if used != 1:
        raise DeepLinkingUnavailable(
            "deep_linking_used", "This choice has already been sent.", platform=request.platform
        )
    settings: dict[str, Any] = request.settings
    link = DeepLink(registration_for(request.platform), request.deployment_id, settings)
    message = link.get_message_jwt([_resource(lab, tutorial)])
    if settings.get("data") is None:
        # `data` is echoed only when the platform sent one; a null claim is not what it sent.
        message.pop("https://purl.imsglobal.org/spec/lti-dl/claim/data", None)
    return DeepLinkingResponse(return_url=settings["deep_link_return_url"], jwt=link.encode_jwt(message))


def _resource(lab: Lab, tutorial: Tutorial | None) -> DeepLinkResource:
    custom = {"lab": lab.slug}
    title = lab.name
    if tutorial is not None:
        custom["tutorial"] = tutorial.slug
        title = f"{lab.name}: {tutorial.title}"
    resource = DeepLinkResource().set_url(tool_url("lti:launch")).set_title(title).set_custom_params(custom)
    graded = tutorial or _only_tutorial(lab)
    if graded is not None:
        resource.set_lineitem(
            LineItem()
            .set_score_maximum(LINE_ITEM_MAXIMUM)
            .set_label(f"{title} (progress)")
            .set_resource_id(graded.slug)
            .set_tag(LINE_ITEM_TAG)
        )
    return resource


def _only_tutorial(lab: Lab) -> Tutorial | None:
    tutorials = list(Tutorial.objects.published().filter(labs=lab)[:2])
    return tutorials[0] if len(tutorials) == 1 else None
