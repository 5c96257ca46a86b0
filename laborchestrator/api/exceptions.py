"""Domain errors as HTTP answers: the services raise `ServiceError`s (laborchestrator.errors), each
class naming its answer, and the API answers with these.

Cluster trouble is 503 (try again later), a limit or a state that forbids the action is 409 with the
rule in `detail`, and nothing a service raises on purpose becomes a 500.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db.models import ProtectedError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import ngettext
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from laborchestrator import errors
from laborchestrator.ratelimit import RateLimited


class DomainError(APIException):
    """An answer with `detail` (the readable rule or reason) and a machine-readable `code`."""


class ClusterUnavailableError(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The cluster cannot be reached right now; try again in a minute."
    default_code = "cluster_unavailable"


class LimitReachedError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A limit on running lab instances was reached."
    default_code = "limit_reached"


class LabNotAvailableError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This lab cannot be started."
    default_code = "lab_not_available"


class InvalidTransitionError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The instance is not in a state that allows this action."
    default_code = "invalid_transition"


class ConsoleNotRunningError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The instance's machines are not running."
    default_code = "console_not_running"


class InUseError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "This object is still in use and cannot be deleted."
    default_code = "in_use"


class RequestTooLargeError(DomainError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class TooManyFieldsError(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request has too many fields."
    default_code = "too_many_fields"


def request_limit_error_for(error: Exception) -> APIException | None:
    """Django's request limits as API errors naming the limit (Django itself answers a bare HTML 400)."""
    if isinstance(error, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return RequestTooLargeError(
            f"The request body is larger than the limit of {filesizeformat(limit)} ({limit} bytes)."
        )
    if isinstance(error, TooManyFieldsSent):
        return TooManyFieldsError(
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields, the limit."
        )
    if isinstance(error, TooManyFilesSent):
        return TooManyFieldsError(
            f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files, the limit."
        )
    return None


DOMAIN_ERRORS: dict[str, type[DomainError]] = {
    errors.CLUSTER_UNAVAILABLE: ClusterUnavailableError,
    errors.LIMIT_REACHED: LimitReachedError,
    errors.LAB_NOT_AVAILABLE: LabNotAvailableError,
    errors.INVALID_TRANSITION: InvalidTransitionError,
    errors.CONSOLE_NOT_RUNNING: ConsoleNotRunningError,
}


def api_error_for(error: errors.ServiceError, *, for_staff: bool) -> APIException:
    """The HTTP error a client sees for a service's error: the cluster's details for staff, plain
    words for everyone else (no internal addresses, no client library text)."""
    detail = error.message if for_staff else error.public_message
    if error.api_field:
        return ValidationError({error.api_field: [detail]})
    if error.api_code == errors.NOT_FOUND:
        return NotFound(detail)
    # Anything else is the operator's to fix (unreachable, forbidden, rejected): try again later.
    return DOMAIN_ERRORS.get(error.api_code, ClusterUnavailableError)(detail)


def protected_api_error_for(error: ProtectedError) -> APIException:
    names = sorted({str(obj) for obj in error.protected_objects})
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    count = ngettext("%(count)d object", "%(count)d objects", len(names)) % {"count": len(names)}
    return InUseError(f"Still used by {count}: {shown}.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, errors.ServiceError):
        request = context.get("request")
        user = getattr(request, "user", None)
        exc = api_error_for(exc, for_staff=bool(getattr(user, "is_staff", False)))
    elif isinstance(exc, ProtectedError):
        exc = protected_api_error_for(exc)
    elif isinstance(exc, RateLimited):  # a throttled sign-in
        exc = Throttled(wait=exc.wait, detail=exc.reason)  # DRF adds the wait
    elif limit_error := request_limit_error_for(exc):
        exc = limit_error
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, DomainError):
        response.data["code"] = exc.get_codes()
    return response
