"""Instructors watching a student's terminal read-only, over the student's one upstream
(vncproxy/sharing.py): output fans out, observer input never reaches the machine, every watch is
logged, and only the lab's instructors may watch."""

from __future__ import annotations

import asyncio
import struct

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


class Reader:
    """Exact reads over a websocket's binary frames (a frame may hold parts of two messages)."""

    def __init__(self, comm) -> None:
        self.comm = comm
        self.buffer = b""

    async def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            message = await self.comm.receive_output(10)
            assert message["type"] == "websocket.send", message
            self.buffer += message["bytes"]
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


PIXEL_FORMAT_16 = struct.pack(">BBBBHHHBBB3x", 16, 16, 0, 1, 31, 63, 31, 11, 5, 0)


async def rfb_client_handshake(reader: Reader, comm) -> tuple[int, int, bytes]:
    assert await reader.read(12) == b"RFB 003.008\n"
    await comm.send_to(bytes_data=b"RFB 003.008\n")
    assert await reader.read(2) == b"\x01\x01"
    await comm.send_to(bytes_data=b"\x01")
    assert await reader.read(4) == b"\0\0\0\0"
    await comm.send_to(bytes_data=b"\x01")
    width, height = struct.unpack(">HH", await reader.read(4))
    pixel_format = await reader.read(16)
    name_length = struct.unpack(">I", await reader.read(4))[0]
    await reader.read(name_length)
    return width, height, pixel_format


async def read_full_update(reader: Reader, width: int, height: int, bytes_per_pixel: int) -> None:
    header = await reader.read(4 + 12)
    assert struct.unpack(">BxHHHHHi", header) == (0, 1, 0, 0, width, height, 0)  # one Raw rectangle
    await reader.read(width * height * bytes_per_pixel)


async def test_an_observer_joining_a_screen_mid_stream_gets_the_whole_picture(
    instance, student, owning_instructor
):
    student_comm = await open_ws(console_path(instance.pk, kind="vnc"), student)
    student_rfb = Reader(student_comm)
    width, height, _ = await rfb_client_handshake(student_rfb, student_comm)
    # The student's noVNC: its pixel format, encodings with zlib state (narrowed by the relay), a request.
    await student_comm.send_to(bytes_data=struct.pack(">B3x", 0) + PIXEL_FORMAT_16)
    await student_comm.send_to(bytes_data=struct.pack(">BxH4i", 2, 4, 7, 16, 0, -223))
    await student_comm.send_to(bytes_data=struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    await read_full_update(student_rfb, width, height, 2)
    # The student asks for nothing more: only the relay's own request can bring the observer a frame.

    observer = await open_ws(watch_path(instance.pk, kind="vnc"), owning_instructor)
    observer_rfb = Reader(observer)
    assert await rfb_client_handshake(observer_rfb, observer) == (width, height, PIXEL_FORMAT_16)
    # Its own requests and keys are dropped; the relay asked the machine for a full update for it.
    await observer.send_to(bytes_data=struct.pack(">B3x", 0) + b"\x20" * 16)
    await observer.send_to(bytes_data=struct.pack(">BBxxI", 4, 1, 0x61))
    await read_full_update(observer_rfb, width, height, 2)  # in the student's pixel format: readable
    await read_full_update(student_rfb, width, height, 2)  # the student got it too, whole
    assert await nothing_arrives(observer)
    await observer.disconnect()
    await student_comm.disconnect()


async def test_the_owner_of_a_class_with_the_student_may_watch(instance, student):
    from datetime import timedelta

    from django.utils import timezone

    from classes.models import ClassMembership, Classroom

    def make_class_owner():
        teacher = get_user_model().objects.create_user(username="tom", password="pw-tom-1", is_staff=True)
        classroom = Classroom.objects.create(
            name="Networks 101", owner=teacher, code_expires_at=timezone.now() + timedelta(days=1)
        )
        classroom.labs.add(instance.lab)
        return teacher, classroom

    teacher, classroom = await database_sync_to_async(make_class_owner)()
    student_comm = await student_console(instance, student)
    refused = await open_ws(watch_path(instance.pk), teacher)
    assert (await expect_close(refused))["code"] == 4403  # alice has not joined Tom's class
    await database_sync_to_async(ClassMembership.objects.create)(
        classroom=classroom, user=student, source="code"
    )
    observer = await open_ws(watch_path(instance.pk), teacher)
    await read_until(observer, b"\r\n")
    await observer.disconnect()
    await student_comm.disconnect()
