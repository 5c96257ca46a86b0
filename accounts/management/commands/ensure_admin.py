"""Create the first administrator of a fresh installation, with a generated password.

Does nothing when a superuser exists. The password comes from `ADMIN_PASSWORD` (or
`ADMIN_PASSWORD_FILE`) when set, otherwise it is generated and printed once.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from laborchestrator.settings import envsecret


class Command(BaseCommand):
    help = "Create the first administrator if there is none, printing a generated password."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=envsecret("ADMIN_USERNAME", "admin"))
        parser.add_argument("--email", default=envsecret("ADMIN_EMAIL", ""))

    def handle(self, *args, username: str, email: str, **options) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write("An administrator already exists; not creating one.")
            return
        password = envsecret("ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email=email, password=password)
        if generated:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created administrator '{username}' with password: {password}\n"
                    "It is shown only now; change it in the admin under Users."
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Created administrator '{username}'."))
