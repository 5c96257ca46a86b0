"""Websocket routes of the console proxy (filled in by the console proxy issue)."""

websocket_urlpatterns: list = []
