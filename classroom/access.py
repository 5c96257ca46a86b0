"""Who may open which class view. A lab's class view: its owner and superusers (Lab.taught_by).
A sign-up class's: its owner and superusers (Classroom.managed_by). An LTI course's: the platform's
instructors of that course (as of their last launch) and superusers.
Everyone else gets 404, students included: they learn nothing about which classes exist."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404

from classes.models import ClassMembership, Classroom
from classroom.roster import ClassScope
from labs.models import Lab, LabInstance
from lti.models import ContextMembership, ResourceLink


def lab_scope(user: Any, slug: str) -> ClassScope:
    lab = get_object_or_404(Lab.objects.taught_by(user), slug=slug)
    return ClassScope(title=lab.name, labs=[lab])


def classes_taught(user: Any) -> list[Classroom]:
    return list(Classroom.objects.managed_by(user).order_by("name"))


def class_scope(user: Any, pk: int) -> ClassScope:
    """A sign-up class (classes app): its owner and superusers; its members' instances of its labs."""
    classroom = get_object_or_404(Classroom.objects.managed_by(user).prefetch_related("labs"), pk=pk)
    members = frozenset(ClassMembership.objects.filter(classroom=classroom).values_list("user_id", flat=True))
    return ClassScope(title=classroom.name, labs=list(classroom.labs.all()), student_ids=members)


def courses_taught(user: Any) -> list[tuple[int, str, str]]:
    """(platform id, context id, title) of the LTI courses whose class view `user` may open."""
    memberships = ContextMembership.objects.all()
    if not user.is_superuser:
        memberships = memberships.filter(user=user, is_instructor=True)
    courses = {}
    for platform_id, context_id, title in memberships.values_list(
        "platform_id", "context_id", "context_title"
    ):
        courses.setdefault((platform_id, context_id), title or context_id)
    return sorted(((p, c, t) for (p, c), t in courses.items()), key=lambda course: course[2])


def course_scope(user: Any, platform_id: int, context_id: str) -> ClassScope:
    if not user.is_active:
        raise Http404
    members = ContextMembership.objects.filter(platform_id=platform_id, context_id=context_id)
    if not user.is_superuser and not members.filter(user=user, is_instructor=True).exists():
        raise Http404("No such course.")
    lab_ids = ResourceLink.objects.filter(
        platform_id=platform_id, context_id=context_id, lab__isnull=False
    ).values_list("lab_id", flat=True)
    labs = list(Lab.objects.filter(pk__in=lab_ids))
    learners = frozenset(members.filter(is_instructor=False).values_list("user_id", flat=True))
    title = members.exclude(context_title="").values_list("context_title", flat=True).first() or context_id
    if not labs and not learners:
        raise Http404("No such course.")
    return ClassScope(title=title, labs=labs, student_ids=learners)


def instance_for_instructor(user: Any, instance_id: int) -> LabInstance:
    """A student's instance whose lab `user` teaches (directly, or through an LTI course the student
    is a learner of); 404 otherwise."""
    instance = get_object_or_404(LabInstance.objects.select_related("lab", "owner"), pk=instance_id)
    if Lab.objects.taught_by(user).filter(pk=instance.lab_id).exists():
        return instance
    if Classroom.objects.managed_by(user).filter(labs=instance.lab_id, members=instance.owner_id).exists():
        return instance
    if user.is_active:
        contexts = ContextMembership.objects.filter(user=user, is_instructor=True).values_list(
            "platform_id", "context_id"
        )
        for platform_id, context_id in contexts:
            learner = ContextMembership.objects.filter(
                platform_id=platform_id, context_id=context_id, user_id=instance.owner_id, is_instructor=False
            ).exists()
            linked = ResourceLink.objects.filter(
                platform_id=platform_id, context_id=context_id, lab_id=instance.lab_id
            ).exists()
            if learner and linked:
                return instance
    raise Http404("No such lab instance.")
