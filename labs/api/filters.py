import django_filters

from laborchestrator.inputs import IdField
from labs.models import LabInstance


class IdFilter(django_filters.NumberFilter):
    """A database id, by laborchestrator.inputs' rules (a NumberFilter takes 1e30, which no column holds)."""

    field_class = IdField


class InstanceFilter(django_filters.FilterSet):
    user = IdFilter(field_name="owner_id", help_text="Owner's user id (staff).")
    lab = django_filters.CharFilter(field_name="lab__slug", help_text="Lab slug.")
    status = django_filters.MultipleChoiceFilter(choices=LabInstance.Status.choices)

    class Meta:
        model = LabInstance
        fields = ["user", "lab", "status"]
