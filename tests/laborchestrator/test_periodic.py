"""Background commands: once for a CronJob, or a loop that survives a failed round."""

import pytest

from laborchestrator import periodic

# Between rounds the loop recycles database connections.
pytestmark = pytest.mark.django_db


class StopLoop(Exception):
    pass


class Flaky(periodic.PeriodicCommand):
    def __init__(self) -> None:
        super().__init__()
        self.rounds = 0

    def run_once(self) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise RuntimeError("database went away")


def test_once_runs_one_round_and_lets_errors_fail_the_job():
    command = Flaky()
    with pytest.raises(RuntimeError):
        command.handle(loop=None)
    assert command.rounds == 1


def test_a_loop_logs_a_failed_round_and_keeps_going(monkeypatch, caplog):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise StopLoop

    monkeypatch.setattr(periodic.time, "sleep", sleep)
    command = Flaky()
    with pytest.raises(StopLoop):
        command.handle(loop=5)
    assert command.rounds == 3
    assert sleeps == [5, 5, 5]
    assert "database went away" in caplog.text
