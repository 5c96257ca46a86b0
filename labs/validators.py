"""Name rules the cluster imposes, checked before anything reaches it."""

import re

from django.core.exceptions import ValidationError

from labs import manifests

DNS_LABEL_MAX_LENGTH = 63
# Instance ids are database BigAutoField values: at most 19 digits.
INSTANCE_ID_MAX_DIGITS = 19
# `<prefix>-<instance id>` must stay a DNS label whatever the id.
NAMESPACE_PREFIX_MAX_LENGTH = DNS_LABEL_MAX_LENGTH - 1 - INSTANCE_ID_MAX_DIGITS

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A namespace prefix is followed by "-<digits>", so it may not end with a hyphen, and it starts
# with a letter so that the result never looks like a number.
_NAMESPACE_PREFIX = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# registry/path[:tag][@digest], as OCI image references are written (lower-case repository path).
_OCI_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def validate_dns_label(value: str) -> None:
    if len(value) > DNS_LABEL_MAX_LENGTH or not _DNS_LABEL.match(value):
        raise ValidationError(
            "%(value)r is not a valid name: use at most 63 lower-case letters, digits and hyphens, "
            "starting and ending with a letter or digit (RFC 1123 DNS label).",
            code="invalid_dns_label",
            params={"value": value},
        )


def validate_namespace_prefix(value: str) -> None:
    if len(value) > NAMESPACE_PREFIX_MAX_LENGTH or not _NAMESPACE_PREFIX.match(value):
        raise ValidationError(
            "%(value)r is not a valid namespace prefix: use at most %(max)d lower-case letters, digits "
            "and hyphens, starting with a letter and ending with a letter or digit, so that "
            "'<prefix>-<instance id>' is always a valid namespace name (RFC 1123, 63 characters).",
            code="invalid_namespace_prefix",
            params={"value": value, "max": NAMESPACE_PREFIX_MAX_LENGTH},
        )


def validate_oci_reference(value: str) -> None:
    if len(value) > 255 or not _OCI_REFERENCE.match(value):
        raise ValidationError(
            "%(value)r is not a container image reference such as "
            "'quay.io/kubevirt/cirros-container-disk-demo:v1.4.0'.",
            code="invalid_image_reference",
            params={"value": value},
        )


def validate_cloud_init_user_data(value: str) -> None:
    """With the loader a start uses (labs.manifests), so what is saved is what starts."""
    try:
        manifests.load_extra_user_data(value)
    except ValueError as error:
        raise ValidationError(
            "This is not usable cloud-init user data: %(reason)s",
            code="invalid_cloud_init_user_data",
            params={"reason": str(error)},
        ) from error


# A container machine's command, args, environment and ports (labs.models.LabMachine).
CONTAINER_LIST_MAX_ITEMS = 64
CONTAINER_STRING_MAX_LENGTH = 4096
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_string_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('Give a list of strings, e.g. ["sleep", "infinity"].')
    if len(value) > CONTAINER_LIST_MAX_ITEMS or any(
        len(item) > CONTAINER_STRING_MAX_LENGTH for item in value
    ):
        raise ValidationError(
            f"At most {CONTAINER_LIST_MAX_ITEMS} items of at most {CONTAINER_STRING_MAX_LENGTH} characters."
        )
    if any("\x00" in item for item in value):
        raise ValidationError("No NUL characters.")


def validate_environment(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError('Give a mapping of names to string values, e.g. {"GREETING": "hello"}.')
    if len(value) > CONTAINER_LIST_MAX_ITEMS:
        raise ValidationError(f"At most {CONTAINER_LIST_MAX_ITEMS} variables.")
    for name, text in value.items():
        if not _ENV_NAME.match(name):
            raise ValidationError(
                "%(name)r is not a valid variable name: letters, digits and underscores, "
                "not starting with a digit.",
                params={"name": name},
            )
        if len(text) > CONTAINER_STRING_MAX_LENGTH or "\x00" in text:
            raise ValidationError(f"The value of {name} is too long or holds a NUL character.")


def validate_ports(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        raise ValidationError("Give a list of port numbers, e.g. [80, 443].")
    if any(not 1 <= p <= 65535 for p in value):
        raise ValidationError("Ports are between 1 and 65535.")
    if len(set(value)) != len(value) or len(value) > CONTAINER_LIST_MAX_ITEMS:
        raise ValidationError("Each port once, at most 64 of them.")


_SHELL_USER = re.compile(r"^(?:[0-9]{1,10}|[a-z_][a-z0-9_-]{0,31})$")


def validate_shell_user(value: str) -> None:
    if value and not _SHELL_USER.match(value):
        raise ValidationError("A user name (lower-case, as in /etc/passwd) or a numeric user id.")
