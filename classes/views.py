"""Staff pages to manage classes, and the student's way in: the sign-up link (access code) and
one-time sign-in links. Thin: joining is classes.joining, the CSV import classes.roster."""

from __future__ import annotations

import csv
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from classes.forms import AccessCodeForm, ClassroomForm, RosterForm, SignUpForm
from classes.joining import (
    JoinRefused,
    class_join,
    find_open_class,
    redeem_sign_in_link,
    sign_up_and_join,
)
from classes.models import Classroom, new_access_code
from classes.roster import RosterInvalid, import_roster, parse_roster

View = Callable[..., HttpResponse]
AUTH_BACKEND = "accounts.backends.UsernameOrEmailBackend"


def staff_required(view: View) -> View:
    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only instructors manage classes.")
        return view(request, *args, **kwargs)

    return wrapped


def _address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _catalog_of(classroom: Classroom) -> str:
    return reverse("portal:catalog") + "?" + urlencode({"class": classroom.pk})


def _managed(request: HttpRequest, pk: int) -> Classroom:
    return get_object_or_404(Classroom.objects.managed_by(request.user), pk=pk)


# --- Staff ---------------------------------------------------------------------------------------


@staff_required
def class_list(request: HttpRequest) -> HttpResponse:
    classes = Classroom.objects.managed_by(request.user).select_related("owner").prefetch_related("labs")
    return render(request, "classes/list.html", {"classes": classes, "now": timezone.now()})


@staff_required
def class_create(request: HttpRequest) -> HttpResponse:
    form = ClassroomForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.instance.owner = request.user
        classroom = form.save()
        messages.success(request, f"Class {classroom.name} created. Share its sign-up link.")
        return redirect(classroom)
    return render(request, "classes/form.html", {"form": form})


def _detail(request: HttpRequest, classroom: Classroom, **extra: Any) -> HttpResponse:
    context = {
        "classroom": classroom,
        "form": ClassroomForm(instance=classroom),
        "roster_form": RosterForm(),
        "sign_up_url": request.build_absolute_uri(classroom.sign_up_path),
        "memberships": classroom.memberships.select_related("user"),
        "code_open": classroom.code_is_open(),
        "sign_in_link_hours": settings.SIGN_IN_LINK_HOURS,
        **extra,
    }
    return render(request, "classes/detail.html", context, status=400 if extra else 200)


@staff_required
def class_detail(request: HttpRequest, pk: int) -> HttpResponse:
    classroom = _managed(request, pk)
    if request.method == "POST":
        form = ClassroomForm(request.POST, instance=classroom)
        if form.is_valid():
            form.save()
            messages.success(request, "Class saved.")
            return redirect(classroom)
        return _detail(request, classroom, form=form)
    return _detail(request, classroom)


@staff_required
@require_POST
def class_new_code(request: HttpRequest, pk: int) -> HttpResponse:
    """A new code (the old one stops working) with its count of uses back at zero."""
    classroom = _managed(request, pk)
    for _ in range(5):
        try:
            with transaction.atomic():
                Classroom.objects.filter(pk=classroom.pk).update(access_code=new_access_code(), code_uses=0)
            break
        except IntegrityError:  # a collision in 31**12 codes: draw again
            continue
    messages.success(request, "New code made: the old code and link no longer work.")
    return redirect(classroom)


@staff_required
@require_POST
def class_import(request: HttpRequest, pk: int) -> HttpResponse:
    """Import a CSV of students; answers a CSV download of their one-time sign-in links."""
    classroom = _managed(request, pk)
    form = RosterForm(request.POST, request.FILES)
    if not form.is_valid():
        return _detail(request, classroom, roster_form=form)
    try:
        entries = parse_roster(form.cleaned_data["roster"].read(1024 * 1024))
    except RosterInvalid as invalid:
        return _detail(request, classroom, roster_form=form, roster_problems=invalid.problems)
    try:
        imported = import_roster(classroom=classroom, entries=entries, created_by=request.user)
    except IntegrityError:
        # An account made in parallel took a user name or email of the file: nothing was imported.
        problems = ["An account with one of these names or emails was just created. Import the file again."]
        return _detail(request, classroom, roster_form=form, roster_problems=problems)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="class-{classroom.pk}-sign-in-links.csv"'
    response["Cache-Control"] = "no-store"
    writer = csv.writer(response)
    writer.writerow(["name", "email", "username", "sign_in_link"])
    for student in imported:
        link = (
            request.build_absolute_uri(reverse("classes:sign-in-link", args=[student.token]))
            if student.token
            else "existing account: signs in with their own password"
        )
        writer.writerow([student.name, student.email, student.username, link])
    return response


# --- Students ------------------------------------------------------------------------------------


def join_with_code(request: HttpRequest) -> HttpResponse:
    """The form where a student types the code the instructor shows."""
    form = AccessCodeForm(request.GET or None)
    if form.is_valid():
        return redirect("classes:join", code=form.cleaned_data["code"])
    return render(request, "classes/enter_code.html", {"form": form})


def join(request: HttpRequest, code: str) -> HttpResponse:
    """The sign-up link: sign up (or sign in) and join the class."""
    try:
        classroom = find_open_class(code=code, address=_address(request))
    except JoinRefused as refused:
        return render(request, "classes/refused.html", {"message": refused.message}, status=404)
    form = SignUpForm()
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                class_join(user=request.user, classroom=classroom)
                return redirect(_catalog_of(classroom))
            form = SignUpForm(request.POST)
            if form.is_valid():
                try:
                    user = sign_up_and_join(
                        classroom=classroom,
                        username=form.cleaned_data["username"],
                        password=form.cleaned_data["password1"],
                        email=form.cleaned_data["email"],
                    )
                except IntegrityError:
                    # Taken by a parallel sign-up between the form's check and the insert.
                    form.add_error("username", "This user name or email was just taken. Choose another.")
                else:
                    login(request, user, backend=AUTH_BACKEND)
                    return redirect(_catalog_of(classroom))
        except JoinRefused as refused:
            return render(request, "classes/refused.html", {"message": refused.message}, status=409)
    context = {"classroom": classroom, "form": form, "code": code, "sign_in_next": request.get_full_path()}
    return render(request, "classes/join.html", context, status=400 if form.errors else 200)


def sign_in_link(request: HttpRequest, token: str) -> HttpResponse:
    """A one-time link from a CSV import. GET only shows a button: link previews in mail and chat
    programs open links, and must not spend them."""
    if request.method != "POST":
        return render(request, "classes/sign_in_link.html")
    try:
        user = redeem_sign_in_link(token=token, address=_address(request))
    except JoinRefused as refused:
        return render(request, "classes/refused.html", {"message": refused.message}, status=410)
    login(request, user, backend=AUTH_BACKEND)
    if not user.has_usable_password():
        return redirect(reverse("classes:set-password"))
    return redirect("portal:catalog")


@login_required
def set_password(request: HttpRequest) -> HttpResponse:
    """After a one-time link: choose a password to sign in with next time."""
    form = SetPasswordForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        messages.success(request, "Password set. Next time, sign in with your user name and this password.")
        return redirect("portal:catalog")
    return render(request, "classes/set_password.html", {"form": form}, status=400 if form.errors else 200)
