"""Console tickets: single use, about a minute, bound to user, instance, machine and kind."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labs.models import LabInstance
from vncproxy.models import ConsoleTicket
from vncproxy.tickets import (
    ConsoleNotOffered,
    ConsoleNotRunning,
    MachineNotFound,
    TicketInvalid,
    ticket_issue,
    ticket_redeem,
)

pytestmark = pytest.mark.django_db
Status = LabInstance.Status


@pytest.fixture
def running(make_instance, make_lab, student) -> LabInstance:
    return make_instance(owner=student, lab=make_lab(), status=Status.RUNNING, machines=2)


def redeem(value: str, instance: LabInstance, machine: str = "vm0", kind: str = "vnc"):
    return ticket_redeem(value=value, instance_id=instance.pk, machine_name=machine, kind=kind)


def test_a_ticket_is_redeemed_once_for_its_user(running, student):
    value, expires_at = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")

    assert 55 <= (expires_at - timezone.now()).total_seconds() <= 60
    assert redeem(value, running) == student
    with pytest.raises(TicketInvalid) as reused:
        redeem(value, running)
    assert reused.value.reason == "unknown"


def test_only_a_hash_of_the_value_is_stored(running, student):
    value, _ = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")

    (stored,) = ConsoleTicket.objects.values_list("value_hash", flat=True)
    assert value not in stored
    assert len(stored) == 64


def test_an_expired_ticket_is_refused(running, student):
    value, _ = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")
    ConsoleTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(TicketInvalid) as expired:
        redeem(value, running)
    assert expired.value.reason == "expired"


def test_ticket_lifetime_follows_the_setting(running, student, settings):
    settings.CONSOLE_TICKET_SECONDS = 5
    _, expires_at = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")

    assert (expires_at - timezone.now()).total_seconds() <= 5


@pytest.mark.parametrize(
    ("machine", "kind", "other_instance"),
    [("vm1", "vnc", False), ("vm0", "serial", False), ("vm0", "vnc", True)],
    ids=["wrong-machine", "wrong-kind", "wrong-instance"],
)
def test_a_ticket_only_opens_the_console_it_was_issued_for(
    running, student, make_instance, make_lab, machine, kind, other_instance
):
    value, _ = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")
    target = (
        make_instance(owner=student, lab=make_lab(), status=Status.RUNNING) if other_instance else running
    )

    with pytest.raises(TicketInvalid) as mismatch:
        redeem(value, target, machine=machine, kind=kind)
    assert mismatch.value.reason == "mismatch"
    # Presented once with the wrong binding, it is spent: a leaked value cannot be tried elsewhere.
    with pytest.raises(TicketInvalid):
        redeem(value, running)


def test_another_student_gets_no_ticket_for_my_instance(running, other_student):
    with pytest.raises(MachineNotFound):
        ticket_issue(user=other_student, instance=running, machine_name="vm0", kind="vnc")
    assert not ConsoleTicket.objects.exists()


def test_staff_may_open_any_console_and_the_ticket_names_them(running, instructor):
    value, _ = ticket_issue(user=instructor, instance=running, machine_name="vm0", kind="serial")

    assert redeem(value, running, kind="serial") == instructor


def test_a_user_who_lost_access_cannot_redeem(running, student):
    value, _ = ticket_issue(user=student, instance=running, machine_name="vm0", kind="vnc")
    student.is_active = False
    student.save()

    with pytest.raises(TicketInvalid) as lost:
        redeem(value, running)
    assert lost.value.reason == "user"


def test_an_unknown_value_is_refused(running):
    with pytest.raises(TicketInvalid) as unknown:
        redeem("made-up", running)
    assert unknown.value.reason == "unknown"


def test_no_ticket_for_a_console_the_machine_lacks_or_a_machine_it_lacks(running, student):
    with pytest.raises(ConsoleNotOffered):
        ticket_issue(user=student, instance=running, machine_name="vm1", kind="serial")
    with pytest.raises(MachineNotFound):
        ticket_issue(user=student, instance=running, machine_name="vm9", kind="vnc")


@pytest.mark.parametrize("status", [Status.STOPPED, Status.STOPPING, Status.FAILED, Status.REQUESTED])
def test_no_ticket_unless_the_machines_exist(make_instance, make_lab, student, status):
    instance = make_instance(owner=student, lab=make_lab(), status=status)

    with pytest.raises(ConsoleNotRunning):
        ticket_issue(user=student, instance=instance, machine_name="vm0", kind="vnc")


# --- Over the API ---------------------------------------------------------------------------------


def test_api_issues_a_ticket_with_the_websocket_url(running, student, client_for):
    response = client_for(student).post(
        f"/api/instances/{running.pk}/machines/vm0/ticket/", {"kind": "vnc"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["websocket_url"] == (
        f"ws://testserver/ws/instances/{running.pk}/machines/vm0/vnc?ticket={body['ticket']}"
    )
    assert redeem(body["ticket"], running) == student


def test_api_ticket_errors(running, student, client_for, make_instance, make_lab):
    client = client_for(student)
    url = f"/api/instances/{running.pk}/machines"
    stopped = make_instance(owner=student, lab=make_lab(), status=Status.STOPPED)

    assert client.post(f"{url}/vm9/ticket/", {"kind": "vnc"}, format="json").status_code == 404
    bad_kind = client.post(f"{url}/vm0/ticket/", {"kind": "ssh"}, format="json")
    assert bad_kind.status_code == 400 and "kind" in bad_kind.json()
    lacking = client.post(f"{url}/vm1/ticket/", {"kind": "serial"}, format="json")
    assert lacking.status_code == 400
    assert lacking.json() == {"kind": ["The machine 'vm1' has no serial console."]}
    not_running = client.post(
        f"/api/instances/{stopped.pk}/machines/vm0/ticket/", {"kind": "vnc"}, format="json"
    )
    assert not_running.status_code == 409
    assert not_running.json()["code"] == "console_not_running"


def test_ticket_issue_is_throttled_per_user(running, student, other_student, client_for, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"console_ticket": "3/minute"},
    }
    url = f"/api/instances/{running.pk}/machines/vm0/ticket/"
    client = client_for(student)

    codes = [client.post(url, {"kind": "vnc"}, format="json").status_code for _ in range(4)]

    assert codes == [201, 201, 201, 429]
    assert "Retry-After" in client.post(url, {"kind": "vnc"}, format="json").headers
