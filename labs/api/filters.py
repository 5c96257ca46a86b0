import django_filters

from labs.models import LabInstance


class InstanceFilter(django_filters.FilterSet):
    user = django_filters.NumberFilter(field_name="owner_id", help_text="Owner's user id (staff).")
    lab = django_filters.CharFilter(field_name="lab__slug", help_text="Lab slug.")
    status = django_filters.MultipleChoiceFilter(choices=LabInstance.Status.choices)

    class Meta:
        model = LabInstance
        fields = ["user", "lab", "status"]
