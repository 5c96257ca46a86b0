"""OIDC login initiation and launch validation (LTI 1.3 core, section 5 and the Security Framework).

pylti1p3 supplies the message rules (required claims per message type), the JWT decoding and the
registration objects; the checks that decide who gets in are done here, because the library leaves
gaps we cannot accept (README.md, "LTI 1.3"): it never consumes a nonce (an id_token could be replayed), it
does not verify `aud` in the signature check, and it keeps state in the session or a per-process cache.

Here a login stores its `state` and `nonce` in a LoginState row and sets a short cookie named after
the state; the launch must come back with that state, that cookie, an id_token carrying that nonce,
signed by the platform of that login, for that client id and one of its deployments, not expired.
The row is used up by the launch, so the same id_token is refused the second time.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from jwcrypto.jwk import JWK
from pylti1p3.contrib.django import DjangoMessageLaunch
from pylti1p3.exception import LtiException

from lti.key_formats import platform_key_set
from lti.models import LoginState, Platform
from lti.platform_http import platform_session
from lti.toolconf import PlatformToolConf, find_platform, registration_for

logger = logging.getLogger("lti.launch")

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
DEPLOYMENT_ID_CLAIM = CLAIM + "deployment_id"
MESSAGE_TYPE_CLAIM = CLAIM + "message_type"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"
DEEP_LINKING_REQUEST = "LtiDeepLinkingRequest"
SUPPORTED_MESSAGES = (RESOURCE_LINK_REQUEST, DEEP_LINKING_REQUEST)
# Asymmetric algorithms only: the platform's public key must never be usable as an HMAC secret.
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512")
# The parameters of a login initiation worth keeping to restart it in a new window.
LOGIN_PARAMS = ("iss", "login_hint", "target_link_uri", "lti_message_hint", "lti_deployment_id", "client_id")
STATE_COOKIE_PREFIX = "lti-state-"
# Login states older than this are deleted by the next login (unused ones expire much sooner).
STATE_RETENTION = timedelta(days=1)


class LaunchRefused(Exception):
    """A login or launch we refuse. `code` goes to the log, `message` to the page; neither holds
    anything from the token."""

    def __init__(self, code: str, message: str, *, status: int = 403, platform: Platform | None = None):
        super().__init__(code)
        self.code = code
        self.message = message
        self.status = status
        self.platform = platform


class CookiesBlocked(LaunchRefused):
    """The launch came back without the state cookie its login set: the browser does not keep or
    send our cookies in the platform's frame. Restarting the login in a new window works."""

    def __init__(self, *, restart_url: str, platform: Platform):
        super().__init__(
            "state_cookie_missing",
            "Your browser did not send this site's cookies inside the course page.",
            status=400,
            platform=platform,
        )
        self.restart_url = restart_url


def tool_url(name: str, *args: Any) -> str:
    """Absolute URL of one of our views as platforms must call it: from SITE_URL, not the request,
    so the values an admin copied into Moodle are the ones we send back (redirect_uri)."""
    return settings.SITE_URL.rstrip("/") + reverse(name, args=args)


def state_cookie_name(state: str) -> str:
    return STATE_COOKIE_PREFIX + state


# --- Login initiation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoginRedirect:
    url: str
    state: str
    cookie_max_age: int


def begin_login(*, params: Mapping[str, str], now: datetime | None = None) -> LoginRedirect:
    """Answer a platform's third-party login initiation: remember a state and nonce, and send the
    browser to the platform's authorization endpoint, which posts the id_token to our launch URL."""
    now = now or timezone.now()
    issuer, login_hint = params.get("iss"), params.get("login_hint")
    if not issuer or not login_hint:
        raise LaunchRefused(
            "login_missing_parameters", "The login request lacks the issuer or login hint.", status=400
        )
    platform = find_platform(issuer, params.get("client_id") or None)
    if platform is None:
        raise LaunchRefused(
            "login_unknown_platform", "This learning platform is not registered with Lab Orchestrator."
        )
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    LoginState.objects.filter(created_at__lt=now - STATE_RETENTION).delete()
    LoginState.objects.create(
        state=state,
        nonce=nonce,
        platform=platform,
        login_params={name: params[name] for name in LOGIN_PARAMS if params.get(name)},
        created_at=now,
    )
    query = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": tool_url("lti:launch"),
        "state": state,
        "nonce": nonce,
        "login_hint": login_hint,
    }
    if params.get("lti_message_hint"):
        query["lti_message_hint"] = params["lti_message_hint"]
    separator = "&" if "?" in platform.auth_login_url else "?"
    return LoginRedirect(
        url=platform.auth_login_url + separator + urlencode(query),
        state=state,
        cookie_max_age=settings.LTI_LOGIN_STATE_SECONDS,
    )


def restart_url(login_state: LoginState) -> str:
    return tool_url("lti:login") + "?" + urlencode(login_state.login_params)


# --- Launch -----------------------------------------------------------------------------------------


@dataclass
class Launch:
    """A validated launch: its platform and the id_token's claims."""

    platform: Platform
    claims: dict[str, Any]
    message_launch: ToolMessageLaunch = field(repr=False)

    @property
    def message_type(self) -> str:
        return self.claims[MESSAGE_TYPE_CLAIM]

    @property
    def deployment_id(self) -> str:
        return self.claims[DEPLOYMENT_ID_CLAIM]

    @property
    def sub(self) -> str:
        return self.claims["sub"]

    def claim(self, name: str, default: Any = None) -> Any:
        """An LTI claim by its short name ("context", "custom", ...)."""
        return self.claims.get(CLAIM + name, default)


def validate_launch(request: HttpRequest, *, now: datetime | None = None) -> Launch:
    message_launch = ToolMessageLaunch(request, now=now or timezone.now())
    message_launch.validate()
    return Launch(
        platform=message_launch.platform,
        claims=dict(message_launch.get_launch_data()),
        message_launch=message_launch,
    )


class ToolMessageLaunch(DjangoMessageLaunch):
    """pylti1p3's launch with our order of checks and our state, nonce, audience and key handling."""

    login_state: LoginState
    platform: Platform

    def __init__(self, request: HttpRequest, *, now: datetime) -> None:
        super().__init__(request, PlatformToolConf(), requests_session=platform_session())
        self.now = now

    def refuse(self, code: str, message: str, *, status: int = 403) -> LaunchRefused:
        return LaunchRefused(code, message, status=status, platform=getattr(self, "platform", None))

    def validate(self) -> ToolMessageLaunch:
        # The signature is checked before anything in the token is trusted; the state is used up last,
        # so a launch refused for a fixable reason (a clock skew) does not burn the login.
        self._validated = True
        try:
            self.validate_state()
            self.validate_jwt_format()
            self.validate_registration()
            self.validate_jwt_signature()
            self.validate_nonce()
            self.validate_deployment()
            self.validate_message()
            self.save_launch_data()
        except LtiException as error:
            self._validated = False
            raise self.refuse("malformed_token", "The launch message cannot be read.", status=400) from error
        except Exception:
            self._validated = False
            raise
        return self

    def validate_state(self) -> ToolMessageLaunch:
        state, id_token = self._get_request_param("state"), self._get_request_param("id_token")
        if not state or not id_token:
            raise self.refuse("missing_parameters", "The launch lacks its state or id_token.", status=400)
        login_state = LoginState.objects.select_related("platform").filter(state=state).first()
        if login_state is None:
            raise self.refuse(
                "unknown_state", "This launch was not started here. Open the activity again.", status=400
            )
        self.login_state, self.platform = login_state, login_state.platform
        if login_state.used_at is not None:
            raise self.refuse("replayed", "This launch has already been used. Open the activity again.")
        if login_state.created_at < self.now - timedelta(seconds=settings.LTI_LOGIN_STATE_SECONDS):
            raise self.refuse(
                "expired_state", "This launch took too long. Open the activity again.", status=400
            )
        if not self.platform.is_active:
            raise self.refuse("platform_inactive", "This learning platform is disabled in Lab Orchestrator.")
        cookie = self._request.get_cookie(state_cookie_name(state))
        if cookie is None:
            # Another login's cookie arrived but not this one's: this browser keeps our cookies, so the
            # launch belongs to someone else's login (login CSRF), not to a blocked frame.
            if any(name.startswith(STATE_COOKIE_PREFIX) for name in self._request.request.COOKIES):
                raise self.refuse("state_mismatch", "This launch does not belong to this browser.")
            raise CookiesBlocked(restart_url=restart_url(login_state), platform=self.platform)
        if not hmac.compare_digest(cookie, state):
            raise self.refuse("state_mismatch", "This launch does not belong to this browser.")
        return self

    def validate_registration(self) -> ToolMessageLaunch:
        body = self._jwt["body"]
        issuer, audience = body.get("iss"), body.get("aud")
        if not issuer or not audience:
            raise self.refuse("missing_claim", "The launch lacks its issuer or audience.", status=400)
        if issuer != self.platform.issuer:
            raise self.refuse("wrong_issuer", "The launch comes from another platform than its login.")
        audiences = [audience] if isinstance(audience, str) else list(audience)
        client_id = self.platform.client_id
        # With several audiences the token must name us as its authorized party (OIDC core 3.1.3.7).
        if client_id not in audiences or (len(audiences) > 1 and body.get("azp") != client_id):
            raise self.refuse("wrong_audience", "The launch is meant for another tool.")
        self._registration = registration_for(self.platform)
        return self

    def get_client_id(self) -> str:
        return self.platform.client_id

    def validate_jwt_signature(self) -> ToolMessageLaunch:
        algorithm = self._jwt.get("header", {}).get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise self.refuse("bad_signature", "The launch is not signed with an accepted algorithm.")
        try:
            jwt.decode(
                self._get_id_token(),
                self._platform_public_key(algorithm),
                algorithms=[algorithm],
                audience=self.platform.client_id,
                issuer=self.platform.issuer,
                leeway=settings.LTI_CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "nonce"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise self.refuse("expired", "The launch has expired. Open the activity again.") from error
        except jwt.MissingRequiredClaimError as error:
            raise self.refuse(
                "missing_claim", f"The launch lacks a claim: {error.claim}.", status=400
            ) from error
        except jwt.InvalidAudienceError as error:
            raise self.refuse("wrong_audience", "The launch is meant for another tool.") from error
        except jwt.InvalidIssuerError as error:
            raise self.refuse("wrong_issuer", "The launch comes from another platform.") from error
        except jwt.ImmatureSignatureError as error:
            raise self.refuse(
                "not_yet_valid", "The launch is dated in the future; check the clocks."
            ) from error
        except jwt.InvalidTokenError as error:
            raise self.refuse("bad_signature", "The launch's signature is not valid.") from error
        return self

    def _platform_public_key(self, algorithm: str) -> Any:
        if self.platform.public_key.strip():
            keys = platform_key_set(self.platform.public_key)
            if keys.single_pem:
                # A pasted PEM (Moodle's "RSA key" alternative) stands for whatever kid the platform names.
                return keys.single_pem.encode()
            key_set = keys.key_set
        else:
            key_set = self._fetch_key_set()
        kid = self._jwt.get("header", {}).get("kid")
        for key in key_set.get("keys", []):
            if key.get("kid") == kid and key.get("alg", algorithm) == algorithm:
                try:
                    return JWK(**key).export_to_pem()
                except Exception as error:  # jwcrypto raises several unrelated types for a bad key
                    raise self.refuse("unknown_key", "The platform's key cannot be read.") from error
        raise self.refuse("unknown_key", "The launch is signed with a key the platform does not publish.")

    def _fetch_key_set(self) -> dict[str, Any]:
        # Fetched on every launch, no cache: launches are rare, and a platform that rotates its keys
        # is then followed at once instead of failing until a cache expires.
        try:
            response = self._requests_session.get(self.platform.keyset_url)
            response.raise_for_status()
            key_set = response.json()
        except (requests.RequestException, ValueError, RecursionError) as error:
            logger.warning(
                "LTI keyset of platform %s unavailable: %s", self.platform.pk, type(error).__name__
            )
            raise self.refuse(
                "platform_keys_unavailable",
                "The learning platform's keys cannot be fetched; try again in a moment.",
                status=502,
            ) from error
        if not isinstance(key_set, dict):
            raise self.refuse("platform_keys_unavailable", "The platform's keyset is not valid.", status=502)
        return key_set

    def validate_nonce(self) -> ToolMessageLaunch:
        nonce = self._jwt["body"].get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce, self.login_state.nonce):
            raise self.refuse("nonce_mismatch", "The launch does not answer this browser's login.")
        return self

    def validate_deployment(self) -> ToolMessageLaunch:
        deployment_id = self._jwt["body"].get(DEPLOYMENT_ID_CLAIM)
        if not deployment_id:
            raise self.refuse("missing_claim", "The launch lacks its deployment id.", status=400)
        if deployment_id not in self.platform.deployment_id_list:
            raise self.refuse("unknown_deployment", "This deployment of the tool is not registered here.")
        return self

    def validate_message(self) -> ToolMessageLaunch:
        message_type = self._jwt["body"].get(MESSAGE_TYPE_CLAIM)
        if message_type not in SUPPORTED_MESSAGES:
            raise self.refuse(
                "unsupported_message", "Lab Orchestrator does not handle this kind of launch.", status=400
            )
        try:
            super().validate_message()
        except LtiException as error:
            # The library's messages name the missing claim ("Must have a user (sub)"), never its value.
            raise self.refuse("missing_claim", f"The launch is incomplete: {error}.", status=400) from error
        return self

    def save_launch_data(self) -> ToolMessageLaunch:
        used = LoginState.objects.filter(pk=self.login_state.pk, used_at__isnull=True).update(
            used_at=self.now
        )
        if used != 1:
            raise self.refuse("replayed", "This launch has already been used. Open the activity again.")
        return self
