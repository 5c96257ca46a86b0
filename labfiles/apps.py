from django.apps import AppConfig


class LabFilesConfig(AppConfig):
    name = "labfiles"
    verbose_name = "Labs as files"
