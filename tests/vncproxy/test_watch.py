"""Instructors watching a student's terminal read-only, over the student's one upstream
(vncproxy/sharing.py): output fans out, observer input never reaches the machine, every watch is
logged, and only the lab's instructors may watch."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from vncproxy.models import ConsoleWatch
from vncproxy.sharing import shares

from .conftest import BANNER_PREFIX, communicator, console_path, expect_close, read_exactly, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owning_instructor(lab, instructor):
    lab.owner = instructor
    lab.save(update_fields=["owner"])
    return instructor


async def open_ws(path: str, user):
    cookie = await database_sync_to_async(session_cookie)(user)
    comm = communicator(path, cookie=cookie)
    connected, _ = await comm.connect(5)
    assert connected
    return comm


def watch_path(instance_id: int, machine: str = "vm0", kind: str = "serial") -> str:
    return console_path(instance_id, machine, kind) + "/watch"


async def student_console(instance, student):
    comm = await open_ws(console_path(instance.pk), student)
    banner = (await comm.receive_output(5))["bytes"]
    assert banner.startswith(BANNER_PREFIX)
    return comm


async def read_until(comm, needle: bytes) -> bytes:
    got = b""
    while needle not in got:
        got += await read_exactly(comm, 1)
    return got


async def nothing_arrives(comm, seconds: float = 0.5) -> bool:
    return await comm.receive_nothing(seconds, interval=0.02)


async def test_observer_sees_the_students_output_and_its_keystrokes_never_reach_the_machine(
    instance, student, owning_instructor
):
    student_comm = await student_console(instance, student)
    observer = await open_ws(watch_path(instance.pk), owning_instructor)
    # A newcomer first gets the recent output: the banner the student saw.
    assert (await read_until(observer, b"\r\n")).startswith(BANNER_PREFIX)

    # The local cluster's serial console echoes what reaches the machine.
    await observer.send_to(bytes_data=b"OBSERVER-TYPED")
    await student_comm.send_to(bytes_data=b"student-typed")
    assert await read_exactly(student_comm, 13) == b"student-typed"
    assert await read_exactly(observer, 13) == b"student-typed"
    assert await nothing_arrives(student_comm), "the observer's keystrokes reached the machine"
    assert await nothing_arrives(observer)

    watch = await database_sync_to_async(ConsoleWatch.objects.get)(instance=instance)
    assert (watch.observer_id, watch.machine_name, watch.kind, watch.ended_at) == (
        owning_instructor.pk,
        "vm0",
        "serial",
        None,
    )
    await observer.disconnect()
    await asyncio.sleep(0.2)
    await database_sync_to_async(watch.refresh_from_db)()
    assert watch.ended_at is not None and watch.seconds is not None
    await student_comm.disconnect()


async def test_observers_are_closed_when_the_student_closes(instance, student, owning_instructor):
    student_comm = await student_console(instance, student)
    first = await open_ws(watch_path(instance.pk), owning_instructor)
    second = await open_ws(watch_path(instance.pk), owning_instructor)
    for observer in (first, second):  # joined: they got the recent output
        await read_until(observer, b"\r\n")
    await student_comm.disconnect()
    for observer in (first, second):
        close = await expect_close(observer)
        assert close["code"] == 4410
    assert not shares


async def test_a_new_student_connection_keeps_the_observers(instance, student, owning_instructor):
    first = await student_console(instance, student)
    observer = await open_ws(watch_path(instance.pk), owning_instructor)
    await read_until(observer, b"\r\n")
    second = await student_console(instance, student)  # e.g. a reload: replaces the first
    assert (await expect_close(first))["code"] == 4001
    await second.send_to(bytes_data=b"after-reload")
    assert await read_exactly(second, 12) == b"after-reload"
    await read_until(observer, b"after-reload")
    await second.disconnect()
    assert (await expect_close(observer))["code"] == 4410


async def test_watching_needs_an_open_student_console(instance, owning_instructor):
    observer = await open_ws(watch_path(instance.pk), owning_instructor)
    close = await expect_close(observer)
    assert close["code"] == 4409
    assert not await database_sync_to_async(ConsoleWatch.objects.exists)()


async def test_students_and_other_instructors_may_not_watch(
    instance, student, other_student, owning_instructor
):
    other_instructor = await database_sync_to_async(get_user_model().objects.create_user)(
        username="olga", password="pw-olga-1", is_staff=True
    )
    student_comm = await student_console(instance, student)
    for user, code in ((other_student, 4403), (student, 4403), (other_instructor, 4403)):
        observer = await open_ws(watch_path(instance.pk), user)
        close = await expect_close(observer)
        assert close["code"] == code, user
    anonymous = communicator(watch_path(instance.pk))
    assert (await anonymous.connect(5))[0]
    assert (await expect_close(anonymous))["code"] == 4401
    assert not await database_sync_to_async(ConsoleWatch.objects.exists)()
    # The student's own stream was not disturbed by the refusals.
    await student_comm.send_to(bytes_data=b"still-here")
    assert await read_exactly(student_comm, 10) == b"still-here"
    await student_comm.disconnect()


async def test_a_superuser_may_watch_any_lab(instance, student):
    admin = await database_sync_to_async(get_user_model().objects.create_superuser)(
        username="root", password="pw-root-1"
    )
    student_comm = await student_console(instance, student)
    observer = await open_ws(watch_path(instance.pk), admin)
    await student_comm.send_to(bytes_data=b"hello")
    await read_until(observer, b"hello")
    await observer.disconnect()
    await student_comm.disconnect()
