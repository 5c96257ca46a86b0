"""What one poll of the live class view costs: time and queries of the state an instructor's page
asks for every 3 seconds, for classes of growing size.

    .venv/bin/python bench/class_view.py [--students 30,100,300] [--repeat 20]

Prepares a throw-away SQLite database (or the one in --database-url) with one lab, a tutorial of 3
pages and 9 steps (3 checked), and per student a running instance with 2 machines, ticks, checks
(passed and failed) and an open page; then times `classroom.roster.class_state` plus the JSON
encoding the view does, in this process (no HTTP: the view adds its constant few milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="30,100,300", help="class sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=20, help="timed polls per class size")
    parser.add_argument("--database-url", default="", help="default: a new SQLite file in a temp dir")
    return parser.parse_args()


def add_students(count: int, start: int, lab, steps, pages) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from classroom.models import TutorialPosition
    from labs.models import InstanceMachine, LabInstance
    from tutorials.models import CheckRun, StepCompletion, StepVerification

    users = get_user_model().objects
    now = timezone.now()
    for n in range(start, start + count):
        user = users.create_user(f"student-{n}", password=secrets.token_hex(8))
        instance = LabInstance.objects.create(
            lab=lab, owner=user, status="running", namespace=f"bench-{n}", started_at=now, expires_at=now
        )
        machine = {
            "image_reference": "a/b:1",
            "cores": 1,
            "memory_mib": 128,
            "username": "u",
            "password": "p",
        }
        InstanceMachine.objects.bulk_create(
            InstanceMachine(
                instance=instance, name=f"vm{m}", has_vnc=True, has_serial_console=True, **machine
            )
            for m in range(2)
        )
        unchecked = [s for s in steps if not hasattr(s, "step_check")]
        checked = [s for s in steps if hasattr(s, "step_check")]
        StepCompletion.objects.bulk_create(StepCompletion(user=user, step=s) for s in unchecked[: n % 7])
        StepVerification.objects.create(instance=instance, step=checked[0])
        for step in checked[1:]:
            CheckRun.objects.create(instance=instance, step=step, user=user, result="failed")
        TutorialPosition.objects.create(instance=instance, tutorial=pages[0].tutorial, page=pages[n % 3])


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="class-bench-") as tmp:
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "laborchestrator.settings",
                "DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
                "LABORCHESTRATOR_VAR_DIR": tmp,
                "SECRET_KEY": secrets.token_urlsafe(50),
                "LOG_LEVEL": "WARNING",
            }
        )
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from classroom.access import lab_scope
        from classroom.roster import class_state
        from labs.models import Lab, LabMachine, VMImage
        from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

        call_command("migrate", verbosity=0)
        owner = get_user_model().objects.create_user("teacher", password=secrets.token_hex(8), is_staff=True)
        image = VMImage.objects.create(
            name="I", container_disk_image="a/b:1", default_username="u", has_ssh_server=True
        )
        lab = Lab.objects.create(name="Bench", slug="bench", namespace_prefix="bench", owner=owner)
        LabMachine.objects.create(lab=lab, name="vm0", image=image)
        tutorial = Tutorial.objects.create(title="T", slug="t", published=True)
        tutorial.labs.add(lab)
        pages = [TutorialPage.objects.create(tutorial=tutorial, title=f"P{p}", order=p) for p in range(3)]
        steps = []
        for page in pages:
            for order in range(3):
                step = Step.objects.create(page=page, order=order, text_markdown=f"step {order}")
                if order == 2:
                    StepCheck.objects.create(step=step, machine="vm0", script="true")
                steps.append(step)
        steps = list(Step.objects.select_related("step_check").order_by("page__order", "order"))

        print(f"{'students':>8} {'queries':>8} {'median ms':>10} {'p95 ms':>8} {'JSON KiB':>9}")
        done = 0
        for size in (int(s) for s in args.students.split(",")):
            add_students(size - done, done, lab, steps, pages)
            done = size
            scope = lab_scope(owner, lab.slug)
            timings = []
            for _ in range(args.repeat + 2):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    state = class_state(scope)
                    body = json.dumps({"rows": state.rows, "steps": state.steps, "actions": state.actions})
                    timings.append((time.perf_counter() - started) * 1000)
            timings = timings[2:]  # warm-up
            p95 = statistics.quantiles(timings, n=20)[-1]
            median, count = statistics.median(timings), len(queries.captured_queries)
            print(f"{size:>8} {count:>8} {median:>10.1f} {p95:>8.1f} {len(body) / 1024:>9.1f}")


if __name__ == "__main__":
    main()
