"""ASGI entry point served by uvicorn (laborchestrator/serve.py): HTTP through Django, websockets
through Channels, both behind the request header limit."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "laborchestrator.settings")
# Django must be set up before any consumer (and so any model) is imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from laborchestrator.request_limits import RequestHeaderLimit  # noqa: E402
from vncproxy.routing import websocket_urlpatterns  # noqa: E402

application = RequestHeaderLimit(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # No origin validator in front: the consumer checks the whole origin (scheme, host, port)
            # and refuses with a close code and a reason a script can read (vncproxy/origin.py).
            "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        }
    )
)
