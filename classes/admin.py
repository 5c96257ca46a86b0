from django.contrib import admin

from classes.models import ClassMembership, Classroom, SignInLink


class MembershipInline(admin.TabularInline):
    model = ClassMembership
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["source", "joined_at"]


@admin.register(Classroom)
class ClassroomAdmin(admin.ModelAdmin):
    """Raw data; instructors manage classes on the staff pages (/classes/)."""

    list_display = ["name", "owner", "code_expires_at", "code_uses", "code_max_uses"]
    readonly_fields = ["access_code", "code_uses"]
    filter_horizontal = ["labs"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).managed_by(request.user)


@admin.register(SignInLink)
class SignInLinkAdmin(admin.ModelAdmin):
    list_display = ["user", "classroom", "created_at", "expires_at", "used_at"]
    readonly_fields = [
        "user",
        "classroom",
        "token_digest",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(classroom__in=Classroom.objects.managed_by(request.user))

    def has_add_permission(self, request) -> bool:
        return False
