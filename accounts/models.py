from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A student or, with `is_staff`, an instructor who authors labs in the admin.

    Email is optional (LTI platforms do not always share it) but unique when given, so people can
    sign in with either their user name or their email address.
    """

    email = models.EmailField("email address", blank=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_unique_email",
                condition=~models.Q(email=""),
                violation_error_message="A user with this email address already exists.",
            )
        ]

    @property
    def is_instructor(self) -> bool:
        return self.is_staff
