"""LTI endpoints. Thin: validation is lti.launch, users lti.accounts, labs lti.resource_links,
deep linking lti.deep_linking, grades lti.grades.

The pages a launch shows are frameable by EMBED_ALLOWED_ORIGINS like the portal's embed views,
because platforms open tools in an iframe; the configuration page is not.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labs.models import Lab
from lti import deep_linking, keys
from lti.accounts import LaunchUser, can_see_course_progress, user_for_launch
from lti.grades import link_grades_for_launch
from lti.launch import (
    DEEP_LINKING_REQUEST,
    CookiesBlocked,
    Launch,
    LaunchRefused,
    begin_login,
    state_cookie_name,
    tool_url,
    validate_launch,
)
from lti.models import Platform, ResourceLink
from lti.progress import course_progress
from lti.resource_links import embed_lab_url, resource_link_for_launch
from portal.embedding import allow_framing
from tutorials.models import Tutorial

logger = logging.getLogger("lti.launch")


def refused(request: HttpRequest, error: LaunchRefused) -> HttpResponse:
    platform = error.platform.pk if error.platform is not None else "-"
    logger.warning("LTI launch refused: %s (platform %s)", error.code, platform)
    if isinstance(error, CookiesBlocked):
        response = render(request, "lti/cookies_blocked.html", {"restart_url": error.restart_url}, status=400)
    else:
        context = {"message": error.message, "code": error.code}
        response = render(request, "lti/error.html", context, status=error.status)
    return allow_framing(response)


@csrf_exempt  # the platform posts the login initiation from its own site
@never_cache
@require_http_methods(["GET", "POST"])
def login_initiation(request: HttpRequest) -> HttpResponse:
    params = request.POST if request.method == "POST" else request.GET
    try:
        login_redirect = begin_login(params=params)
    except LaunchRefused as error:
        return refused(request, error)
    response = redirect(login_redirect.url)
    # The launch comes back as a cross-site POST: only a SameSite=None (hence Secure, HTTPS) cookie
    # comes with it. Over plain HTTP (development) the cookie is Lax and works when the platform
    # is on the same site (localhost).
    secure = request.is_secure()
    response.set_cookie(
        state_cookie_name(login_redirect.state),
        login_redirect.state,
        max_age=login_redirect.cookie_max_age,
        secure=secure,
        httponly=True,
        samesite="None" if secure else "Lax",
    )
    return response


@csrf_exempt  # the id_token is the proof; it arrives as a cross-site form POST from the platform
@never_cache
@require_POST
def launch(request: HttpRequest) -> HttpResponse:
    try:
        validated = validate_launch(request)
        if validated.message_type == DEEP_LINKING_REQUEST:
            response = _deep_linking_launch(request, validated)
        else:
            response = _resource_launch(request, validated)
    except LaunchRefused as error:
        return refused(request, error)
    # Deleted with the attributes it was set with, or browsers keep a SameSite=None cookie.
    response.delete_cookie(
        state_cookie_name(request.POST["state"]), samesite="None" if request.is_secure() else "Lax"
    )
    return allow_framing(response)


def _sign_in(request: HttpRequest, launch_user: LaunchUser) -> None:
    if not launch_user.user.is_active:
        raise LaunchRefused("user_inactive", "Your Lab Orchestrator account is disabled.")
    login(request, launch_user.user, backend=settings.AUTHENTICATION_BACKENDS[0])


def _resource_launch(request: HttpRequest, launch: Launch) -> HttpResponse:
    link = resource_link_for_launch(launch)
    launch_user = user_for_launch(launch)
    _sign_in(request, launch_user)
    link_grades_for_launch(launch, launch_user, link)
    logger.info("LTI launch: user %s, resource link %s", launch_user.user.pk, link.pk)
    if launch_user.is_instructor:
        return redirect("lti:course-progress", pk=link.pk)
    if link.lab is None:
        return render(request, "lti/not_configured.html", {"link": link})
    return redirect(embed_lab_url(link.lab, link.tutorial))


def _deep_linking_launch(request: HttpRequest, launch: Launch) -> HttpResponse:
    launch_user = user_for_launch(launch)
    _sign_in(request, launch_user)
    pick = deep_linking.start_deep_linking(launch, launch_user)
    return redirect("lti:deep-linking", token=pick.token)


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    return JsonResponse(keys.jwks())


@csrf_exempt  # the unguessable, single-use token in the URL authorises the pick, cookies or not
@never_cache
@require_http_methods(["GET", "POST"])
def deep_linking_pick(request: HttpRequest, token: str) -> HttpResponse:
    pick = deep_linking.open_request(token)
    if pick is None:
        error = LaunchRefused(
            "deep_linking_expired",
            "This choice has expired or was already sent. Start again from the course.",
        )
        return refused(request, error)
    if request.method == "GET":
        context = {"labs": deep_linking.pickable_labs(), "action": request.path}
        return allow_framing(render(request, "lti/deep_linking_pick.html", context))
    lab_slug, _, tutorial_slug = request.POST.get("choice", "").partition("/")
    lab = get_object_or_404(Lab.objects.published(), slug=lab_slug)
    tutorial = None
    if tutorial_slug:
        tutorial = get_object_or_404(Tutorial.objects.published().filter(labs=lab), slug=tutorial_slug)
    try:
        answer = deep_linking.answer(pick, lab=lab, tutorial=tutorial)
    except LaunchRefused as error:
        return refused(request, error)
    context = {"return_url": answer.return_url, "jwt": answer.jwt, "lab": lab, "tutorial": tutorial}
    return allow_framing(render(request, "lti/deep_linking_return.html", context))


@never_cache
@require_GET
def course_progress_page(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.is_authenticated:
        error = LaunchRefused(
            "not_signed_in",
            "You are not signed in here (any more). Open the activity from your course again.",
        )
        return refused(request, error)
    link = get_object_or_404(ResourceLink.objects.select_related("platform", "lab", "tutorial"), pk=pk)
    if not can_see_course_progress(request.user, link):
        raise Http404("No such course activity.")
    context: dict[str, Any] = {
        "link": link,
        "progress": course_progress(link),
        "lab_url": embed_lab_url(link.lab, link.tutorial) if link.lab else None,
    }
    return allow_framing(render(request, "lti/course_progress.html", context))


@staff_member_required
@require_GET
def configuration(request: HttpRequest) -> HttpResponse:
    """What a platform's admin asks for when registering the tool, ready to copy."""
    key = keys.current_key()
    context = {
        "urls": [
            ("Tool URL", tool_url("lti:launch")),
            ("Initiate login URL", tool_url("lti:login")),
            ("Redirection URI(s)", tool_url("lti:launch")),
            ("Public keyset URL", tool_url("lti:jwks")),
            ("Deep linking URL (Content Selection URL)", tool_url("lti:launch")),
        ],
        "public_key": key.public_key,
        "kid": key.kid,
        "platforms": Platform.objects.order_by("name"),
        "embed_origins": settings.EMBED_ALLOWED_ORIGINS,
    }
    return render(request, "lti/configuration.html", context)
