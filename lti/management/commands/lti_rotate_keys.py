"""Make a new signing key for the LTI tool; the previous one stays in the JWKS for LTI_KEY_GRACE_HOURS.

Run it on a schedule (e.g. monthly) or when a key may have leaked. Platforms that fetch the keyset
URL follow by themselves; one configured with a pasted "RSA key" needs the new public key pasted.
"""

from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from lti.keys import rotate_keys


class Command(BaseCommand):
    help = (
        "Generate a new LTI tool key pair and retire the current one (kept in the JWKS for a grace period)."
    )

    def handle(self, *args, **options) -> None:
        rotation = rotate_keys()
        self.stdout.write(
            f"New key {rotation.new_key.kid}; retired {rotation.retired}, "
            + ngettext("deleted %(count)d expired key.", "deleted %(count)d expired keys.", rotation.deleted)
            % {"count": rotation.deleted}
        )
