"""Which lab (and tutorial) a course activity opens, and where a launch lands.

The choice comes with the launch as custom parameters `lab=<slug>` and `tutorial=<slug>`: deep
linking puts them into the activity it creates, or the instructor types them into Moodle's "Custom
parameters". Each launch records them on the ResourceLink, so an activity keeps its lab when a later
launch comes without them.
"""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from labs.models import Lab
from lti.launch import Launch, LaunchRefused
from lti.models import ResourceLink
from tutorials.models import Tutorial


def resource_link_for_launch(launch: Launch) -> ResourceLink:
    claim = launch.claim("resource_link") or {}
    context = launch.claim("context") or {}
    link, _ = ResourceLink.objects.get_or_create(
        platform=launch.platform, resource_link_id=str(claim["id"])[:255]
    )
    link.title = str(claim.get("title") or "")[:255]
    link.context_id = str(context.get("id") or "")[:255] if isinstance(context, dict) else ""
    custom = launch.claim("custom") or {}
    if isinstance(custom, dict):
        _apply_custom(link, lab_slug=custom.get("lab"), tutorial_slug=custom.get("tutorial"))
    link.save()
    return link


def _apply_custom(link: ResourceLink, *, lab_slug: object, tutorial_slug: object) -> None:
    tutorial = None
    if isinstance(tutorial_slug, str) and tutorial_slug:
        tutorial = Tutorial.objects.published().filter(slug=tutorial_slug).first()
        if tutorial is None:
            raise LaunchRefused(
                "unknown_tutorial",
                f"This activity opens the tutorial '{tutorial_slug}', "
                "which does not exist or is not published.",
                status=404,
                platform=link.platform,
            )
    if isinstance(lab_slug, str) and lab_slug:
        lab = Lab.objects.published().filter(slug=lab_slug).first()
        if lab is None:
            raise LaunchRefused(
                "unknown_lab",
                f"This activity opens the lab '{lab_slug}', which does not exist or is not published.",
                status=404,
                platform=link.platform,
            )
        link.lab, link.tutorial = lab, tutorial
    elif tutorial is not None:
        link.lab, link.tutorial = tutorial.labs.published().order_by("name").first(), tutorial


def graded_tutorial(link: ResourceLink) -> Tutorial | None:
    """The tutorial whose progress is the activity's grade: the one chosen, or the lab's only one."""
    if link.tutorial_id is not None:
        return link.tutorial
    if link.lab_id is None:
        return None
    tutorials = list(Tutorial.objects.published().filter(labs=link.lab_id)[:2])
    return tutorials[0] if len(tutorials) == 1 else None


def embed_lab_url(lab: Lab, tutorial: Tutorial | None = None) -> str:
    """The portal's embeddable lab page (frameable by EMBED_ALLOWED_ORIGINS)."""
    try:
        url = reverse("portal:embed-lab", args=[lab.slug])
    except NoReverseMatch:
        url = f"/embed/labs/{lab.slug}/"  # the portal's documented URL, should its route be renamed
    return f"{url}?tutorial={tutorial.slug}" if tutorial is not None else url
