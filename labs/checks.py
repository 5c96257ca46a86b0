"""Start-up checks of the labs settings: KubeVirt sizing, the cluster profile, the installation id."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from labs import cluster_profile
from labs.cluster_profile import kubevirt_sizing_from_settings
from labs.installation import INSTALLATION_ID_PATTERN


@register()
def check_kubevirt_sizing(app_configs, **kwargs) -> list[Error]:
    try:
        kubevirt_sizing_from_settings()
    except ValueError as error:
        return [
            Error(
                f"The KubeVirt sizing settings are not valid: {error}.",
                hint="Set KUBEVIRT_CPU_ALLOCATION_RATIO, KUBEVIRT_MEMORY_OVERHEAD_RATIO and "
                "KUBEVIRT_SUPPORT_CONTAINER_RESOURCES as the cluster's KubeVirt CR configures them "
                "(README, 'Sizing the quota').",
                id="labs.E001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_cluster_profile(app_configs, **kwargs) -> list[Error | Warning]:
    """The cluster profile (labs/cluster_profile.py): labs.E002-E006, W001."""
    messages: list[Error | Warning] = [
        Error(problem.message, hint=problem.hint, id=problem.check_id)
        for problem in cluster_profile.problems()
    ]
    if not settings.LABS_DNS_NAMESPACE and not settings.LABS_DNS_CIDRS:
        messages.append(
            Warning(
                "Lab machines may send DNS queries nowhere: LABS_DNS_NAMESPACE and LABS_DNS_CIDRS are empty.",
                hint="Their NetworkPolicy then allows traffic inside the lab only; names will not resolve.",
                id="labs.W001",
            )
        )
    return messages


@register()
def check_installation_id(app_configs, **kwargs) -> list[Error]:
    value = settings.INSTALLATION_ID
    if not value or INSTALLATION_ID_PATTERN.match(value):
        return []
    return [
        Error(
            f"INSTALLATION_ID is {value!r}, which is not a Kubernetes label value.",
            hint="Use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
            "or digit; or leave it empty to use the id generated at the first start.",
            id="labs.E007",
        )
    ]
