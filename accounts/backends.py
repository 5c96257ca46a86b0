from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from accounts.signin_limits import signin_attempt


class UsernameOrEmailBackend(ModelBackend):
    """Sign in with the user name or, case-insensitively, the email address.

    Failed attempts are throttled per user name and client address (accounts.signin_limits): over a
    limit, SignInThrottled is raised before the password is checked, and the views answer 429.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        if "@" in username:
            user = get_user_model().objects.filter(email__iexact=username).first()
            if user is not None:
                username = user.get_username()
        address = request.META.get("REMOTE_ADDR") if request is not None else None
        attempt = signin_attempt(username=username, address=address)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and attempt is not None:
            attempt.give_back()  # only failures count
        return user
