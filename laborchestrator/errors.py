"""The base of the errors an app's services raise on purpose, and what the API answers for each.

Apps subclass `ServiceError` and say, per class, which answer it is (`api_code`: one of the codes
below; `api_field`: the request field it is about, for a validation error). The API's exception
handler (laborchestrator.api.exceptions) turns them into HTTP answers knowing only this module, so the
project package never imports an app.
"""

from __future__ import annotations

# The answers, by code: 503 when the cluster cannot do it now; 409 for a limit or a state that
# forbids the action; 404 for something the user cannot see; 400 for a request field (api_field).
CLUSTER_UNAVAILABLE = "cluster_unavailable"
LIMIT_REACHED = "limit_reached"
LAB_NOT_AVAILABLE = "lab_not_available"
INVALID_TRANSITION = "invalid_transition"
CONSOLE_NOT_RUNNING = "console_not_running"
NOT_FOUND = "not_found"
INVALID = "invalid"


class ServiceError(Exception):
    """`message` for staff and operators (it may carry the cluster's exact words, internal addresses,
    client library text); `public_message` in plain words for everyone else, the same unless a class
    or the raiser says otherwise."""

    api_code = CLUSTER_UNAVAILABLE
    api_field: str | None = None
    # What a student reads when the message holds details meant for staff (set per class).
    public_default = ""

    def __init__(self, message: str, *, public_message: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.public_message = public_message or self.public_default or message
