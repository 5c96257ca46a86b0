"""The student's pages: sign-in is Django's; the lab catalog, the instance page and their embeddable
variants are here. Thin: the pages are rendered once, then their scripts (static/portal/) talk to
the REST API and the console websockets."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse

from classes.models import Classroom
from laborchestrator.inputs import parse_id
from labs.models import Lab, LabInstance, LabMachine
from portal.embedding import embeddable
from tutorials.models import Tutorial

View = Callable[..., HttpResponse]


def _labs_for(user) -> QuerySet[Lab]:
    return Lab.objects.visible_to(user).prefetch_related(
        Prefetch("machines", queryset=LabMachine.objects.select_related("image")),
        Prefetch(
            "tutorials",
            queryset=Tutorial.objects.visible_to(user).only("id", "slug", "title", "summary"),
            to_attr="visible_tutorials",
        ),
    )


def _active_instances_by_lab(user) -> dict[int, LabInstance]:
    """The user's newest active instance of each lab."""
    instances = LabInstance.objects.filter(owner=user).active().order_by("created_at", "id")
    return {instance.lab_id: instance for instance in instances}


def _embed_sign_in(full_page_url: Callable[..., str]) -> Callable[[View], View]:
    """For anonymous users, an embed view answers with a page that explains how to sign in.

    The sign-in form cannot be framed, and inside a cross-site iframe the browser may not send our
    cookies at all: the student signs in (or simply continues) in a new window at `full_page_url`,
    called with the view's URL arguments.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.user.is_authenticated:
                return view(request, *args, **kwargs)
            context = {"open_url": request.build_absolute_uri(full_page_url(**kwargs))}
            return render(request, "portal/embed_sign_in.html", context)

        return wrapped

    return decorator


def _class_names_by_lab(user) -> dict[int, list[str]]:
    """The names of the user's classes that offer each lab."""
    offered: dict[int, list[str]] = {}
    for lab_id, name in Classroom.labs.through.objects.filter(classroom__members=user).values_list(
        "lab_id", "classroom__name"
    ):
        offered.setdefault(lab_id, []).append(name)
    return offered


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    """Every lab the user may start, marked with the classes that offer it; `?class=ID` shows one of
    the user's classes only (where joining a class leads)."""
    labs = _labs_for(request.user)
    classroom = None
    class_id = parse_id(request.GET.get("class", ""))
    if class_id is not None:
        classroom = Classroom.objects.filter(pk=class_id, members=request.user).first()
        if classroom is not None:
            labs = labs.filter(classes=classroom)
    labs = list(labs)
    active = _active_instances_by_lab(request.user)
    offered = _class_names_by_lab(request.user)
    for lab in labs:
        lab.active_instance = active.get(lab.pk)
        lab.class_names = offered.get(lab.pk, [])
    labs.sort(key=lambda lab: (not lab.class_names, lab.name))
    return render(request, "portal/catalog.html", {"labs": labs, "classroom": classroom})


def _workspace(request: HttpRequest, pk: int, *, embed: bool) -> HttpResponse:
    instances = LabInstance.objects.visible_to(request.user).select_related("lab", "owner")
    instance = get_object_or_404(instances, pk=pk)
    machines = list(instance.machines.order_by("order", "id"))
    tutorials = list(Tutorial.objects.visible_to(request.user).filter(labs=instance.lab).order_by("title"))
    full_page = reverse("portal:instance", args=[instance.pk])
    config = {
        "instanceId": instance.pk,
        "lab": instance.lab.slug,
        "status": instance.status,
        "embed": embed,
        "urls": {
            "instance": reverse("api:instance-detail", args=[instance.pk]),
            "instances": reverse("api:instance-list"),
            "tutorials": reverse("api:tutorial-list"),
            "instancePage": reverse("portal:embed-instance" if embed else "portal:instance", args=[0]),
            "openWindow": request.build_absolute_uri(full_page),
            # The class view's side (classroom app): only on the student's own instance.
            **(
                {
                    "notices": reverse("classroom:student-notices", args=[instance.pk]),
                    "position": reverse("classroom:student-position", args=[instance.pk]),
                }
                if instance.owner_id == request.user.pk
                else {}
            ),
        },
        "machines": [
            {
                "name": machine.name,
                "hasVnc": machine.has_vnc,
                "hasSerial": machine.has_serial_console,
                "isContainer": machine.kind == "container",
            }
            for machine in machines
        ],
        "tutorials": [{"slug": tutorial.slug, "title": tutorial.title} for tutorial in tutorials],
    }
    first = next((m for m in machines if m.opens_first), machines[0] if machines else None)
    context = {
        "instance": instance,
        "machines": machines,
        "first_machine": first,
        "tutorials": tutorials,
        "config": config,
        "embed": embed,
        "open_url": config["urls"]["openWindow"],
    }
    return render(request, "portal/instance.html", context)


@login_required
def instance_page(request: HttpRequest, pk: int) -> HttpResponse:
    return _workspace(request, pk, embed=False)


@embeddable
@_embed_sign_in(lambda pk: reverse("portal:instance", args=[pk]))
def embed_instance(request: HttpRequest, pk: int) -> HttpResponse:
    return _workspace(request, pk, embed=True)


@embeddable
@_embed_sign_in(lambda slug: reverse("portal:catalog"))
def embed_lab(request: HttpRequest, slug: str) -> HttpResponse:
    """The stable URL a course page frames: the student's running instance of the lab, or a start card."""
    lab = get_object_or_404(_labs_for(request.user), slug=slug)
    instance = _active_instances_by_lab(request.user).get(lab.pk)
    if instance is not None:
        return redirect("portal:embed-instance", pk=instance.pk)
    context = {
        "lab": lab,
        "embed": True,
        "open_url": request.build_absolute_uri(reverse("portal:catalog")),
        "instance_page_url": reverse("portal:embed-instance", args=[0]),
    }
    return render(request, "portal/embed_lab.html", context)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every site, whatever the page names (the admin names none)."""
    return HttpResponsePermanentRedirect(static("portal/favicon.svg"))
