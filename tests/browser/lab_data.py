"""Rows the browser tests create: users, a two-machine lab like the demo, its tutorial."""

from __future__ import annotations

import uuid

from labs.models import InstanceMachine, Lab, LabInstance, LabMachine, VMImage
from localcluster.demoimage import DEMO_REFERENCE
from localcluster.desktopimage import DESKTOP_REFERENCE
from tutorials.models import Step, Tutorial, TutorialPage

from .conftest import PASSWORD

# What the first page's code blocks print when a shell runs them: the text typed never contains it.
SERIAL_RESULT = "typed-42"
SCREEN_RESULT = "Screen-42"

FIRST_PAGE = """Every machine has a terminal. Run this on the selected machine:

```
echo typed-$((6*7))
```

!!! note "Knowledge: the serial console"
    The terminal is the machine's first serial port, relayed by the console proxy.

On the **Screen** of a machine, this prints on its terminal instead (mind the capital S):

```
echo Screen-$((6*7)) > /dev/ttyS0
```
"""

SECOND_PAGE = """Your machines reach each other on the lab network.

```
ping -c 1 {{ vm.alpha.ip }}
```
"""


def make_user(django_user_model, username: str, **fields):
    return django_user_model.objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, **fields
    )


def make_demo_lab(*, runtime: str, name: str = "Explore your lab network") -> Lab:
    tag = uuid.uuid4().hex[:6]
    image = VMImage.objects.create(
        name=f"Demo {tag}",
        container_disk_image=DEMO_REFERENCE
        if runtime == "qemu"
        else "quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
        default_username="lab",
        has_vnc=True,
        has_serial_console=True,
        min_memory_mib=96,
    )
    lab = Lab.objects.create(
        name=name,
        slug=f"explore-{tag}",
        namespace_prefix=f"b{tag}",
        published=True,
        lifetime_minutes=60,
        description="Two machines, alpha and beta, on a private network.",
    )
    LabMachine.objects.create(lab=lab, name="alpha", image=image, memory_mib=128, order=0, opens_first=True)
    LabMachine.objects.create(lab=lab, name="beta", image=image, memory_mib=128, order=1)
    tutorial = Tutorial.objects.create(title="Explore the network", slug=f"explore-{tag}", published=True)
    tutorial.labs.add(lab)
    first = TutorialPage.objects.create(
        tutorial=tutorial, title="Your terminal", order=0, body_markdown=FIRST_PAGE
    )
    Step.objects.create(page=first, order=0, text_markdown="Run the first command on **alpha**.")
    Step.objects.create(page=first, order=1, text_markdown="alpha's address is `{{ vm.alpha.ip }}`.")
    second = TutorialPage.objects.create(
        tutorial=tutorial, title="The network", order=1, body_markdown=SECOND_PAGE
    )
    Step.objects.create(page=second, order=0, text_markdown="Ping alpha from beta.")
    return lab


DESKTOP_PAGE = """Click into the terminal window of the desktop, then type this:

```
fbsetroot -solid red
```
"""


def make_desktop_lab() -> Lab:
    """One machine with the desktop image, screen only, as the demo's desktop lab has it."""
    tag = uuid.uuid4().hex[:6]
    image = VMImage.objects.create(
        name=f"Desktop {tag}",
        container_disk_image=DESKTOP_REFERENCE,
        default_username="lab",
        has_vnc=True,
        has_serial_console=False,
        min_memory_mib=192,
    )
    lab = Lab.objects.create(
        name=f"A desktop {tag}",
        slug=f"desktop-{tag}",
        namespace_prefix=f"d{tag}",
        published=True,
        lifetime_minutes=60,
        description="A graphical desktop.",
    )
    LabMachine.objects.create(lab=lab, name="desktop", image=image, memory_mib=256, order=0, opens_first=True)
    tutorial = Tutorial.objects.create(title="The desktop", slug=f"desktop-{tag}", published=True)
    tutorial.labs.add(lab)
    TutorialPage.objects.create(tutorial=tutorial, title="Your desktop", order=0, body_markdown=DESKTOP_PAGE)
    return lab


def record_instance(
    *, owner, lab: Lab, status: str = LabInstance.Status.STOPPED, password: str = "pw"
) -> LabInstance:
    """An instance in the database only: enough for pages that need no running machine."""
    instance = LabInstance.objects.create(
        lab=lab, owner=owner, status=status, namespace=f"browser-{uuid.uuid4().hex[:12]}"
    )
    for index, machine in enumerate(lab.machines.all()):
        InstanceMachine.objects.create(
            instance=instance,
            name=machine.name,
            image_reference=machine.image.container_disk_image,
            cores=1,
            memory_mib=machine.memory_mib,
            username="lab",
            password=password,
            has_vnc=True,
            has_serial_console=True,
            order=index,
            opens_first=machine.opens_first,
        )
    return instance
