"""Who may open which console: the authorisation matrix, through the whole ASGI stack."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from labs import cluster, lifecycle
from vncproxy.models import ConsoleTicket
from vncproxy.tickets import ticket_issue

from .conftest import BANNER_PREFIX, communicator, console_path, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def opens(path: str, **kwargs) -> bool:
    """True if the console streams (the echo console's banner arrives), else the close message."""
    comm = communicator(path, **kwargs)
    connected, _ = await comm.connect(timeout=5)
    assert connected  # refusals are accepted, then closed with a code the browser can read
    message = await comm.receive_output(5)
    await comm.disconnect()
    if message["type"] == "websocket.send":
        assert message["bytes"].startswith(BANNER_PREFIX)
        return True
    return message


async def refused_with(path: str, **kwargs) -> tuple[int, str]:
    result = await opens(path, **kwargs)
    assert result is not True, "the console opened"
    return result["code"], result.get("reason", "")


async def test_owner_opens_serial_and_vnc(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    assert await opens(console_path(instance.pk, kind="serial"), cookie=cookie) is True
    comm = communicator(console_path(instance.pk, kind="vnc"), cookie=cookie)
    assert (await comm.connect(5))[0]
    assert (await comm.receive_output(5))["bytes"].startswith(b"RFB 003.008\n")
    await comm.disconnect()


async def test_staff_may_open_any_students_console(instance, instructor):
    cookie = await database_sync_to_async(session_cookie)(instructor)
    assert await opens(console_path(instance.pk), cookie=cookie) is True


async def test_other_student_is_refused_as_not_yours(instance, other_student):
    cookie = await database_sync_to_async(session_cookie)(other_student)
    code, reason = await refused_with(console_path(instance.pk), cookie=cookie)
    assert (code, reason) == (4403, "This lab instance is not yours.")


async def test_anonymous_is_refused_as_not_signed_in(instance):
    assert await refused_with(console_path(instance.pk)) == (4401, "Not signed in.")


FOREIGN = (4403, "Consoles can only be opened from this site's pages.")


@pytest.mark.parametrize(
    "origin",
    [
        b"https://evil.example",
        b"http://localhost:1",  # another port of our host: cookies are not separated by port
        b"https://localhost",  # another scheme
        b"http://localhost.evil.example",
        b"null",  # a sandboxed frame or a file
        b"not an origin",
    ],
)
async def test_other_origins_are_refused_with_a_reason_before_anything_is_looked_up(
    instance, student, origin
):
    cookie = await database_sync_to_async(session_cookie)(student)
    assert await refused_with(console_path(instance.pk), cookie=cookie, origin=origin) == FOREIGN


async def test_the_sites_own_origin_with_its_port_is_allowed(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    path = console_path(instance.pk)
    assert await opens(path, cookie=cookie, host=b"localhost:8000", origin=b"http://localhost:8000") is True
    assert (
        await refused_with(path, cookie=cookie, host=b"localhost:8000", origin=b"http://localhost") == FOREIGN
    )
    # A Host outside ALLOWED_HOSTS names no origin of ours.
    assert (
        await refused_with(path, cookie=cookie, host=b"evil.example", origin=b"http://evil.example")
        == FOREIGN
    )


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(instance, student, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    cookie = await database_sync_to_async(session_cookie)(student)
    path = console_path(instance.pk)
    forwarded = [(b"x-forwarded-proto", b"https")]
    assert await opens(path, cookie=cookie, origin=b"https://localhost", extra_headers=forwarded) is True
    assert (
        await refused_with(path, cookie=cookie, origin=b"http://localhost", extra_headers=forwarded)
        == FOREIGN
    )
    assert await refused_with(path, cookie=cookie, origin=b"https://localhost") == FOREIGN  # no header


async def test_site_url_and_csrf_trusted_origins_are_allowed(instance, student, settings):
    settings.SITE_URL = "https://labs.example.org/"
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.net"]
    cookie = await database_sync_to_async(session_cookie)(student)
    path = console_path(instance.pk)
    assert await opens(path, cookie=cookie, origin=b"https://labs.example.org") is True
    assert await opens(path, cookie=cookie, origin=b"https://www.example.net") is True
    assert await refused_with(path, cookie=cookie, origin=b"http://www.example.net") == FOREIGN


async def test_without_an_origin_a_ticket_opens_and_a_session_cookie_does_not(instance, student):
    # A script holding a ticket sends no Origin; a ticket is not an ambient credential.
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="serial"
    )
    cookie = await database_sync_to_async(session_cookie)(student)
    assert await opens(console_path(instance.pk, ticket=value), origin=None) is True
    assert await refused_with(console_path(instance.pk), cookie=cookie, origin=None) == (
        4401,
        "A console ticket is required when the request has no Origin header.",
    )


async def test_a_ticket_from_a_foreign_page_is_refused(instance, student):
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="serial"
    )
    path = console_path(instance.pk, ticket=value)
    assert await refused_with(path, origin=b"https://evil.example") == FOREIGN


async def test_a_path_that_is_no_console_closes_with_a_reason(student):
    assert await refused_with("/ws/nothing-here", origin=None) == (4404, "No console at this address.")


async def test_embedding_origin_is_allowed(instance, student, settings):
    settings.EMBED_ALLOWED_ORIGINS = ["https://moodle.example.org"]
    cookie = await database_sync_to_async(session_cookie)(student)
    path = console_path(instance.pk)
    assert await opens(path, cookie=cookie, origin=b"https://moodle.example.org") is True


async def test_unknown_machine_instance_or_console_kind(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    code, _ = await refused_with(console_path(instance.pk, machine="nope"), cookie=cookie)
    assert code == 4404
    code, _ = await refused_with(console_path(instance.pk + 1000), cookie=cookie)
    assert code == 4404
    # The `text` machine's image has a serial console and no VNC.
    assert await opens(console_path(instance.pk, machine="text"), cookie=cookie) is True
    code, reason = await refused_with(console_path(instance.pk, machine="text", kind="vnc"), cookie=cookie)
    assert (code, reason) == (4404, "This machine has no graphical desktop.")


async def test_paused_and_stopped_instances_are_not_running(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    await database_sync_to_async(lifecycle.instance_pause)(instance=instance)
    code, reason = await refused_with(console_path(instance.pk), cookie=cookie)
    assert (code, reason) == (4409, "The lab instance is not running (paused).")
    await database_sync_to_async(lifecycle.instance_resume)(instance=instance)
    assert await opens(console_path(instance.pk), cookie=cookie) is True
    await database_sync_to_async(lifecycle.instance_stop)(instance=instance)
    code, _ = await refused_with(console_path(instance.pk), cookie=cookie)
    assert code == 4409


async def test_ticket_opens_once_without_a_session(instance, student):
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="serial"
    )
    assert await opens(console_path(instance.pk, ticket=value)) is True
    # Single use: the same value again is refused.
    assert await refused_with(console_path(instance.pk, ticket=value)) == (4401, "Console ticket refused.")


async def test_expired_ticket_is_refused(instance, student):
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="serial"
    )
    await database_sync_to_async(
        lambda: ConsoleTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    )()
    assert (await refused_with(console_path(instance.pk, ticket=value)))[0] == 4401


async def test_ticket_for_another_console_is_refused_and_spent(instance, student):
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=instance, machine_name="vm0", kind="vnc"
    )
    assert (await refused_with(console_path(instance.pk, kind="serial", ticket=value)))[0] == 4401
    assert (await refused_with(console_path(instance.pk, kind="vnc", ticket=value)))[0] == 4401


async def test_ticket_of_another_user_cannot_open_a_foreign_instance(start_instance, student, other_student):
    mine = await database_sync_to_async(start_instance)(student)
    theirs = await database_sync_to_async(start_instance)(other_student)
    value, _ = await database_sync_to_async(ticket_issue)(
        user=student, instance=mine, machine_name="vm0", kind="serial"
    )
    # A valid ticket of mine, presented for someone else's instance: refused (and spent).
    assert (await refused_with(console_path(theirs.pk, ticket=value)))[0] == 4401
    assert (await refused_with(console_path(mine.pk, ticket=value)))[0] == 4401


async def test_binary_subprotocol_is_accepted_when_offered(instance, student):
    cookie = await database_sync_to_async(session_cookie)(student)
    comm = communicator(console_path(instance.pk), cookie=cookie, subprotocols=["binary"])
    connected, subprotocol = await comm.connect(5)
    assert connected and subprotocol == "binary"
    await comm.disconnect()


async def test_cluster_unavailable(instance, student, settings, tmp_path, app_cluster):
    cookie = await database_sync_to_async(session_cookie)(student)
    settings.KUBECONFIG = str(tmp_path / "missing-kubeconfig")
    cluster.reset_client()
    code, reason = await refused_with(console_path(instance.pk), cookie=cookie)
    assert (code, reason) == (4503, "The cluster is unavailable; try again shortly.")
    settings.KUBECONFIG = str(app_cluster.kubeconfig)  # so the fixture can stop the instance
    cluster.reset_client()
