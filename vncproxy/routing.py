"""Websocket routes of the console proxy."""

from django.urls import re_path

from vncproxy.consumers import ConsoleConsumer, UnknownPathConsumer, WatchConsumer

websocket_urlpatterns = [
    re_path(
        r"^ws/instances/(?P<instance_id>[0-9]+)/machines/(?P<machine>[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/"
        r"(?P<kind>vnc|serial|terminal)$",
        ConsoleConsumer.as_asgi(),
    ),
    # An instructor watching the same console read-only (vncproxy/sharing.py).
    re_path(
        r"^ws/instances/(?P<instance_id>[0-9]+)/machines/(?P<machine>[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)/"
        r"(?P<kind>vnc|serial|terminal)/watch$",
        WatchConsumer.as_asgi(),
    ),
    # Anything else closes with a reason, instead of failing the handshake without one.
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
