"""The class view's records, read-only, for superusers (instructors read them on their class views,
which show only their own classes)."""

from django.contrib import admin

from classroom.models import ClassAction, StudentMessage
from vncproxy.models import ConsoleWatch


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ClassAction)
class ClassActionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "kind", "lab", "instance", "detail", "error")
    list_filter = ("kind",)
    list_select_related = ("actor", "lab", "instance__lab", "instance__owner")


@admin.register(StudentMessage)
class StudentMessageAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "sender", "instance", "text")
    list_select_related = ("sender", "instance__lab", "instance__owner")


@admin.register(ConsoleWatch)
class ConsoleWatchAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "observer", "instance", "machine_name", "kind", "ended_at")
    list_filter = ("kind",)
    list_select_related = ("observer", "instance__lab", "instance__owner")
