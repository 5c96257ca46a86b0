from django.apps import AppConfig


class LabOrchestratorConfig(AppConfig):
    name = "laborchestrator"
    verbose_name = "Lab Orchestrator"

    def ready(self) -> None:
        from laborchestrator import checks  # noqa: F401  (registers the system checks)
