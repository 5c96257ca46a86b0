"""pylti1p3's view of the platforms registered in the admin (lti.models.Platform)."""

from __future__ import annotations

from typing import Any

from pylti1p3.deployment import Deployment
from pylti1p3.registration import Registration
from pylti1p3.tool_config import ToolConfAbstract

from lti.key_formats import platform_key_set
from lti.keys import current_key
from lti.models import Platform


def registration_for(platform: Platform) -> Registration:
    key = current_key()
    registration = (
        Registration()
        .set_issuer(platform.issuer)
        .set_client_id(platform.client_id)
        .set_auth_login_url(platform.auth_login_url)
        .set_auth_token_url(platform.auth_token_url)
        .set_key_set_url(platform.keyset_url or None)
        .set_tool_private_key(key.private_key)
        .set_tool_public_key(key.public_key)
    )
    if platform.auth_audience:
        registration.set_auth_audience(platform.auth_audience)
    if platform.public_key.strip():
        registration.set_key_set(platform_key_set(platform.public_key).key_set)
    return registration


def find_platform(issuer: str, client_id: str | None) -> Platform | None:
    """The active platform of `issuer` and `client_id`; without a client id (it is optional in the
    login initiation), the issuer's only platform."""
    platforms = Platform.objects.filter(issuer=issuer, is_active=True)
    if client_id:
        return platforms.filter(client_id=client_id).first()
    candidates = list(platforms[:2])
    return candidates[0] if len(candidates) == 1 else None


class PlatformToolConf(ToolConfAbstract):
    """Every issuer may have several client ids (several registrations of one Moodle site)."""

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration | None:
        platform = find_platform(iss, None)
        return registration_for(platform) if platform else None

    def find_registration_by_params(
        self, iss: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Registration | None:
        platform = find_platform(iss, client_id)
        return registration_for(platform) if platform else None

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment | None:
        platform = find_platform(iss, None)
        return _deployment(platform, deployment_id)

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str, *args: Any, **kwargs: Any
    ) -> Deployment | None:
        return _deployment(find_platform(iss, client_id), deployment_id)


def _deployment(platform: Platform | None, deployment_id: str) -> Deployment | None:
    if platform is None or deployment_id not in platform.deployment_id_list:
        return None
    return Deployment().set_deployment_id(deployment_id)
