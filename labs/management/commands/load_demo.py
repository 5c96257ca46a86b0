"""Load the demo content `make run` offers a new user: two labs, each with its tutorial.

- "A desktop in your browser" (listed first: labs are sorted by name): a graphical Linux desktop
  and a small server; the student serves a web page on the server and opens it on the desktop.
- "Explore your lab network": two small machines with serial consoles that ping each other.

The demo images are kernel-boot containerDisks in a registry (`python -m localcluster
demo-images` pushes them): REGISTRY/laborchestrator/demo:1 and .../desktop:1, REGISTRY being
`--registry` (make run's embedded registry by default, 127.0.0.1:5055). No name resolves to
docker.io.

Idempotent: existing objects (matched by name or slug) are left as they are, so an instructor's
edits to the demo survive the next `make run`. The one exception: a demo image whose reference is
still one this command wrote (an older default, another registry port) follows `--registry`.
"""

import re

from django.core.management.base import BaseCommand
from django.db import transaction

from labs.models import Lab, LabMachine, VMImage
from tutorials.models import Step, StepCheck, Tutorial, TutorialPage

# make run's embedded registry (laborchestrator/devserver.py) and the tag `demo-images` pushes
# (localcluster/registry/demo.py; tests check they agree).
DEFAULT_REGISTRY = "127.0.0.1:5055"
DEMO_TAG = "1"
KERNEL_BOOT = {
    "kernel_path": "/boot/vmlinuz",
    "initrd_path": "/boot/initrd.img",
    "kernel_args": "console=ttyS0",
}
# What earlier runs of this command wrote: references it may move to today's registry.
_OURS = re.compile(
    r"^(localcluster/(demo|desktop):latest|[^/]+/laborchestrator/(demo|desktop):[^/@]+(@sha256:[0-9a-f]{64})?)$"
)


def demo_reference(registry: str, name: str) -> str:
    return f"{registry}/laborchestrator/{name}:{DEMO_TAG}"


DESKTOP_PAGES = [
    (
        "Your desktop",
        """The machine **desktop** shows a Linux desktop on the right: a terminal and a web browser
in windows, and a bar at the bottom that lists them. It is a real graphical desktop (X11), running
in your own virtual machine.

!!! note "Knowledge: a desktop in the browser"
    The screen is the virtual machine's graphics card, sent to your browser over VNC. Your mouse
    and keyboard go back the same way: click into a window and type.

Click into the terminal window and find the desktop's address (or use **Type into VM** above the
command, which types it for you):

```
ip -4 addr show eth0
```

Right-click the desktop's background for a menu: a second terminal, another browser window.
""",
        [
            "Find the desktop's address in its terminal: `{{ vm.desktop.ip }}`.",
            "Open a second terminal from the menu (right-click the background).",
        ],
    ),
    (
        "Open a page from your server",
        """Your lab has a second machine, **server**, without a desktop: pick it on the right and its
terminal opens. Write a web page and serve it with the web server busybox brings along:

```
mkdir -p /www && echo '<h1>Hello from the server</h1>' > /www/index.html && httpd -h /www
```

Switch back to **desktop**, click into the browser window and press **Ctrl+L**, which selects its
address bar. Type the server's address (or use **Type into VM**), ending with Enter:

```
http://{{ vm.server.ip }}/
```

!!! tip "Nobody else sees it"
    The server's page is on your lab's private network: only your machines can open it.
""",
        [
            "Start the web server on **server**.",
            "Open `http://{{ vm.server.ip }}/` in the desktop's browser and read the greeting.",
        ],
    ),
]

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
        """From **alpha**, send three pings to beta, by its name:

```
ping -c 3 beta
```

!!! note "Knowledge: names"
    The cluster's DNS knows the machines of your lab by name: `beta` is short for
    `beta.lab.<your namespace>.svc.cluster.local`, and it stands for `{{ vm.beta.ip }}`, the
    address beta showed you. Try `nslookup beta`.

Each machine also has a user `{{ vm.alpha.user }}` whose password was generated for you:
`{{ vm.alpha.password }}` on alpha.

Now leave a note on **beta** (the button types it there and presses Enter):

```{.bash .run machine=beta}
echo "hello from $(hostname)" > /tmp/hello
```

Then press **Check** on the last step: Lab Orchestrator looks inside beta itself.
""",
        [
            "Ping beta from alpha by name and see three replies.",
            "Ping alpha from beta: `ping -c 3 alpha`.",
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


def follow_registry(image: VMImage, reference: str) -> None:
    """A demo image this command made, not since edited, moves to today's registry."""
    if image.container_disk_image != reference and _OURS.match(image.container_disk_image):
        image.container_disk_image = reference
        for field, value in KERNEL_BOOT.items():
            setattr(image, field, value)
        image.save(update_fields=["container_disk_image", *KERNEL_BOOT])


def load_tutorial(*, slug: str, title: str, summary: str, lab: Lab, pages: list) -> Tutorial:
    tutorial, created = Tutorial.objects.get_or_create(
        slug=slug, defaults={"title": title, "summary": summary, "published": True}
    )
    if created:
        tutorial.labs.add(lab)
        for page_order, (page_title, body, steps) in enumerate(pages):
            page = TutorialPage.objects.create(
                tutorial=tutorial, title=page_title, order=page_order, body_markdown=body
            )
            for step_order, entry in enumerate(steps):
                # A step is its text, or (text, check) for a step the student's machine proves.
                text, check = entry if isinstance(entry, tuple) else (entry, None)
                step = Step.objects.create(page=page, order=step_order, text_markdown=text)
                if check is not None:
                    StepCheck.objects.create(step=step, **check)
    return tutorial


class Command(BaseCommand):
    help = "Create the demo VM images, the demo labs and their tutorials, unless they exist."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--registry",
            default=DEFAULT_REGISTRY,
            help=f"HOST[:PORT] holding the demo images (default {DEFAULT_REGISTRY}: make run's registry)",
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        registry = options["registry"]
        image, _ = VMImage.objects.get_or_create(
            name="Lab Orchestrator demo",
            defaults={
                "description": "Debian kernel with a busybox userland; boots in seconds. Built by "
                "`python -m localcluster build-image` for the local cluster.",
                "container_disk_image": demo_reference(registry, "demo"),
                "default_username": "lab",
                "has_vnc": True,
                "has_serial_console": True,
                "has_ssh_server": True,
                "min_memory_mib": 96,
                **KERNEL_BOOT,
            },
        )
        follow_registry(image, demo_reference(registry, "demo"))
        if not image.has_ssh_server and _OURS.match(image.container_disk_image):
            # Demo images built before step checks had no SSH server; today's have dropbear.
            image.has_ssh_server = True
            image.save(update_fields=["has_ssh_server"])
        desktop_image, _ = VMImage.objects.get_or_create(
            name="Lab Orchestrator desktop",
            defaults={
                "description": "Debian kernel, Xorg, the Fluxbox window manager, xterm and the Dillo "
                "browser; boots to its desktop in seconds. Built by `python -m localcluster "
                "build-desktop-image` for the local cluster.",
                "container_disk_image": demo_reference(registry, "desktop"),
                "default_username": "lab",
                # Only the screen: it is what the student should see first, and its terminal
                # window replaces a serial console.
                "has_vnc": True,
                "has_serial_console": False,
                "min_memory_mib": 192,
                **KERNEL_BOOT,
            },
        )
        follow_registry(desktop_image, demo_reference(registry, "desktop"))
        desktop_lab, created = Lab.objects.get_or_create(
            slug="desktop-in-your-browser",
            defaults={
                "name": "A desktop in your browser",
                "description": "A Linux desktop with a terminal and a web browser, and a small server "
                "on a private network: serve a web page and open it on the desktop.",
                "published": True,
                "namespace_prefix": "desktop",
                "lifetime_minutes": 60,
                "idle_timeout_minutes": 20,
            },
        )
        if created:
            LabMachine.objects.create(
                lab=desktop_lab,
                name="desktop",
                image=desktop_image,
                cores=1,
                memory_mib=256,
                order=0,
                opens_first=True,
            )
            LabMachine.objects.create(
                lab=desktop_lab, name="server", image=image, cores=1, memory_mib=128, order=1
            )
        load_tutorial(
            slug="desktop-in-your-browser",
            title="A desktop in your browser",
            summary="Use a graphical desktop, then open a web page that your own server serves.",
            lab=desktop_lab,
            pages=DESKTOP_PAGES,
        )
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
        load_tutorial(
            slug="explore-your-lab-network",
            title="Explore your lab network",
            summary="Find your machines' addresses and ping one from the other.",
            lab=lab,
            pages=PAGES,
        )
        self.stdout.write(f"Demo labs '{desktop_lab.name}' and '{lab.name}' with their tutorials are ready.")
