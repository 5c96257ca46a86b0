from django.apps import AppConfig


class LtiConfig(AppConfig):
    name = "lti"
    verbose_name = "LTI (Moodle and other learning platforms)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from lti import checks  # noqa: F401  (registers the system checks)
