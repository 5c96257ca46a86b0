from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import UsernameField
from django.utils import timezone

from classes.models import Classroom
from labs.models import Lab


def _in_two_weeks():
    return (timezone.now() + timedelta(days=14)).replace(second=0, microsecond=0)


class ClassroomForm(forms.ModelForm):
    class Meta:
        model = Classroom
        fields = ["name", "labs", "code_expires_at", "code_max_uses"]
        widgets = {
            "labs": forms.CheckboxSelectMultiple,
            "code_expires_at": forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Students only see published labs: a class cannot offer them anything else.
        self.fields["labs"].queryset = Lab.objects.published()
        self.fields["labs"].help_text = "Published labs only: students cannot open unpublished ones."
        self.fields["code_expires_at"].input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        if not self.instance.pk:
            self.initial.setdefault("code_expires_at", _in_two_weeks())


class AccessCodeForm(forms.Form):
    code = forms.CharField(label="Class code", max_length=40, strip=True)


class SignUpForm(forms.Form):
    """A new student account: user name and password, email optional. No field can make staff."""

    username = UsernameField(label="User name", max_length=150)
    email = forms.EmailField(label="Email (optional)", required=False)
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        User = get_user_model()
        User.username_validator(username)
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("This user name is taken. Choose another, or sign in if it is yours.")
        return username

    def clean_email(self) -> str:
        email = self.cleaned_data["email"]
        if email and get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email exists. Sign in with it instead.")
        return email

    def clean(self):
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            user = get_user_model()(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password1, user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


class RosterForm(forms.Form):
    roster = forms.FileField(label="Students (CSV: name,email)")
