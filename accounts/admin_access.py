"""Admin access for instructors.

`is_staff` means instructor: every instructor may author labs and tutorials without being handed
model permissions one by one. User management stays with superusers (Django's permissions).
"""

from django.contrib import admin


def is_instructor(request) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


class InstructorAdmin(admin.ModelAdmin):
    def has_module_permission(self, request) -> bool:
        return is_instructor(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return is_instructor(request)

    def has_add_permission(self, request) -> bool:
        return is_instructor(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_instructor(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_instructor(request)


class InstructorInline:
    """Mixin for inlines inside an InstructorAdmin."""

    def has_view_permission(self, request, obj=None) -> bool:
        return is_instructor(request)

    def has_add_permission(self, request, obj=None) -> bool:
        return is_instructor(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return is_instructor(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return is_instructor(request)
