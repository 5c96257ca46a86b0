"""Load the demo content `make run` offers a new user: a two-machine lab and its tutorial.

Idempotent: existing objects (matched by name or slug) are left as they are, so an instructor's
edits to the demo survive the next `make run`.
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from labs.models import Lab, LabMachine, VMImage
from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

DEMO_IMAGE_REFERENCE = "localcluster/demo:latest"

PAGES = [
    (
        "Your lab network",
        """You have two machines of your own, **alpha** and **beta**, on a private network that
nobody else can reach. Pick a machine on the right; its serial console opens beside this text.

!!! note "Knowledge: a lab network"
    Every student gets a private copy of this network, in a Kubernetes namespace of its own.
    A network policy keeps traffic inside it: your machines reach each other, and nobody else's.

Find the address of the machine you are on:

```
ip -4 addr show eth0
```

Use the **Type into VM** button above a command to type it into the selected machine.
""",
        [
            "Open the console of **alpha** and run `ip -4 addr show eth0`: alpha is `{{ vm.alpha.ip }}`.",
            "Switch to **beta** and find its address the same way: `{{ vm.beta.ip }}`.",
        ],
    ),
    (
        "Reach the other machine",
        """From **alpha**, send three pings to beta:

```
ping -c 3 {{ vm.beta.ip }}
```

!!! tip "Why no host names?"
    The demo machines have no DNS server, so they reach each other by address.

Each machine also has a user `{{ vm.alpha.user }}` whose password was generated for you:
`{{ vm.alpha.password }}` on alpha.

Now leave a note on **beta** (the button types it there and presses Enter):

```{.bash .run machine=beta}
echo "hello from $(hostname)" > /tmp/hello
```

Then press **Check** on the last step: Lab Orchestrator looks inside beta itself.
""",
        [
            "Ping beta from alpha and see three replies.",
            "Ping alpha from beta: `ping -c 3 {{ vm.alpha.ip }}`.",
            (
                "Leave a note in `/tmp/hello` on **beta**.",
                {
                    "machine": "beta",
                    "script": 'test -s /tmp/hello || { echo "FAIL: /tmp/hello on beta is missing or empty."; '
                    "exit 1; }",
                    "success_message": "beta has your note.",
                },
            ),
        ],
    ),
]


class Command(BaseCommand):
    help = "Create the demo VM image, a two-machine lab and its tutorial, unless they exist."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        image, _ = VMImage.objects.get_or_create(
            name="Lab Orchestrator demo",
            defaults={
                "description": "Debian kernel with a busybox userland; boots in seconds. Built by "
                "`python -m localcluster build-image` for the local cluster.",
                "container_disk_image": DEMO_IMAGE_REFERENCE,
                "default_username": "lab",
                "has_vnc": True,
                "has_serial_console": True,
                "has_ssh_server": True,
                "min_memory_mib": 96,
            },
        )
        if not image.has_ssh_server and image.container_disk_image == DEMO_IMAGE_REFERENCE:
            # Demo images built before step checks had no SSH server; today's have dropbear.
            image.has_ssh_server = True
            image.save(update_fields=["has_ssh_server"])
        lab, created = Lab.objects.get_or_create(
            slug="explore-your-lab-network",
            defaults={
                "name": "Explore your lab network",
                "description": "Two small Linux machines on a private network: find their addresses "
                "and make them talk to each other.",
                "published": True,
                "namespace_prefix": "demo",
                "lifetime_minutes": 60,
                "idle_timeout_minutes": 20,
            },
        )
        if created:
            for order, name in enumerate(["alpha", "beta"]):
                LabMachine.objects.create(
                    lab=lab,
                    name=name,
                    image=image,
                    cores=1,
                    memory_mib=128,
                    order=order,
                    opens_first=order == 0,
                )
        tutorial, created = Tutorial.objects.get_or_create(
            slug="explore-your-lab-network",
            defaults={
                "title": "Explore your lab network",
                "summary": "Find your machines' addresses and ping one from the other.",
                "published": True,
            },
        )
        if created:
            tutorial.labs.add(lab)
            for page_order, (title, body, steps) in enumerate(PAGES):
                page = TutorialPage.objects.create(
                    tutorial=tutorial, title=title, order=page_order, body_markdown=body
                )
                for step_order, entry in enumerate(steps):
                    text, check = entry if isinstance(entry, tuple) else (entry, None)
                    step = Step.objects.create(page=page, order=step_order, text_markdown=text)
                    if check is not None:
                        StepCheck.objects.create(step=step, **check)
        self.stdout.write(f"Demo lab '{lab.name}' with tutorial '{tutorial.title}' is ready.")
