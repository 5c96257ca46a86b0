from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from laborchestrator.sealing import seal, unseal
from labs.registry import dockerconfigjson, registry_host
from labs.validators import (
    NAMESPACE_PREFIX_MAX_LENGTH,
    validate_cloud_init_user_data,
    validate_dns_label,
    validate_environment,
    validate_namespace_prefix,
    validate_oci_reference,
    validate_ports,
    validate_shell_user,
    validate_string_list,
)

MAX_CORES_PER_MACHINE = 16
MAX_MEMORY_MIB_PER_MACHINE = 64 * 1024
# Ready instances per lab, kept always or for a scheduled class: a bound on what one setting can start.
MAX_READY_INSTANCES = 200


class VMImage(models.Model):
    """A bootable disk that lab machines run, published as a KubeVirt containerDisk image."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    container_disk_image = models.CharField(
        "container disk image",
        max_length=255,
        validators=[validate_oci_reference],
        help_text="OCI reference of the containerDisk, "
        "e.g. quay.io/kubevirt/cirros-container-disk-demo:v1.4.0",
    )
    default_username = models.CharField(
        max_length=32, help_text="User that cloud-init gives the generated password to."
    )
    has_vnc = models.BooleanField("graphical desktop (VNC)", default=True)
    has_serial_console = models.BooleanField("serial console", default=True)
    has_ssh_server = models.BooleanField(
        "SSH server",
        default=False,
        help_text="The image runs an SSH server on port 22 that accepts the keys cloud-init gives "
        "users (ssh_authorized_keys). Step checks need it.",
    )
    min_memory_mib = models.PositiveIntegerField(
        "minimum memory (MiB)", default=128, validators=[MinValueValidator(16)]
    )
    min_cores = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_CORES_PER_MACHINE)]
    )
    kernel_path = models.CharField(
        "kernel path",
        max_length=255,
        blank=True,
        help_text="For a kernel-boot image (KubeVirt's kernelBoot.container): the kernel's path in the "
        "image, e.g. /boot/vmlinuz. Empty: the image is a containerDisk with its disk in /disk/.",
    )
    initrd_path = models.CharField(
        "initrd path",
        max_length=255,
        blank=True,
        help_text="With a kernel path: the initrd's, e.g. /boot/initrd.img.",
    )
    kernel_args = models.CharField(
        "kernel command line",
        max_length=1024,
        blank=True,
        help_text="With a kernel path: what the kernel is booted with, e.g. console=ttyS0.",
    )
    pull_secret_username = models.CharField(
        "registry user name",
        max_length=255,
        blank=True,
        help_text="For a private registry: the user the cluster pulls the image as. The password is "
        "stored sealed and copied into each lab namespace as a kubernetes.io/dockerconfigjson Secret.",
    )
    # laborchestrator.sealing, purpose PULL_SECRET_PURPOSE; empty without credentials.
    pull_secret_password_sealed = models.TextField(blank=True, editable=False)

    PULL_SECRET_PURPOSE = "vmimage-pull-secret"

    class Meta:
        ordering = ["name"]
        verbose_name = "VM image"
        constraints = [
            models.CheckConstraint(
                condition=Q(has_vnc=True) | Q(has_serial_console=True),
                name="labs_vmimage_has_a_console",
                violation_error_message="An image needs a graphical desktop, a serial console, or both.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_pinned(self) -> bool:
        return "@sha256:" in self.container_disk_image

    def clean(self) -> None:
        super().clean()
        if (self.initrd_path or self.kernel_args) and not self.kernel_path:
            raise ValidationError(
                {"kernel_path": "An initrd or kernel command line needs the kernel's path."}
            )
        for field in ("kernel_path", "initrd_path"):
            value = getattr(self, field)
            if value and not value.startswith("/"):
                raise ValidationError({field: "A path in the image starts with /."})

    @property
    def is_kernel_boot(self) -> bool:
        return bool(self.kernel_path)

    def set_pull_password(self, password: str) -> None:
        self.pull_secret_password_sealed = (
            seal(password, purpose=self.PULL_SECRET_PURPOSE) if password else ""
        )

    def pull_credentials(self) -> dict[str, Any] | None:
        """The `.dockerconfigjson` of the image's pull Secret, or None without credentials."""
        host = registry_host(self.container_disk_image)
        if not (self.pull_secret_username and self.pull_secret_password_sealed and host):
            return None
        password = unseal(self.pull_secret_password_sealed, purpose=self.PULL_SECRET_PURPOSE)
        return dockerconfigjson(host, self.pull_secret_username, password)


class LabQuerySet(models.QuerySet):
    def published(self) -> LabQuerySet:
        return self.filter(published=True)

    def visible_to(self, user) -> LabQuerySet:
        return self if user.is_staff else self.published()

    def taught_by(self, user) -> LabQuerySet:
        """The labs whose class view `user` may open: a superuser's all, an instructor's own."""
        if user.is_superuser:
            return self
        if not (user.is_active and user.is_staff):
            return self.none()
        return self.filter(owner=user)


class Lab(models.Model):
    """A network of machines that every student who starts it gets a private copy of."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=50, unique=True)
    description = models.TextField(blank=True, help_text="Markdown is not rendered here; plain text.")
    published = models.BooleanField(default=False, help_text="Students only see published labs.")
    instances_per_user = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="How many instances of this lab one student may run at the same time.",
    )
    lifetime_minutes = models.PositiveIntegerField(
        default=120,
        validators=[MinValueValidator(5), MaxValueValidator(7 * 24 * 60)],
        help_text="An instance stops itself this long after it started.",
    )
    idle_timeout_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(7 * 24 * 60)],
        help_text="An instance stops itself after this long without console or tutorial activity (0: never).",
    )
    namespace_prefix = models.CharField(
        max_length=NAMESPACE_PREFIX_MAX_LENGTH,
        validators=[validate_namespace_prefix],
        # No angle brackets: the admin shows help texts as HTML.
        help_text="Instances run in namespaces named PREFIX-ID, e.g. networking-42 for instance 42 "
        "with the prefix networking.",
    )
    # Who runs classes with it: the class view shows a lab to its owner and to superusers only.
    # Labs from before owners have none, so only superusers see them until one is set.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_labs",
        help_text="The instructor whose class view shows this lab (superusers see every lab).",
    )
    ready_instances = models.PositiveSmallIntegerField(
        "keep ready",
        default=0,
        validators=[MaxValueValidator(MAX_READY_INSTANCES)],
        help_text="Instances kept started and running before anyone asks (0: none). A student's "
        "start takes one at once; the pool refills in the background.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = LabQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("admin:labs_lab_change", args=[self.pk])

    @property
    def total_cores(self) -> int:
        return sum(machine.cores for machine in self.machines.all())

    @property
    def total_memory_mib(self) -> int:
        return sum(machine.memory_mib for machine in self.machines.all())


class ReadySchedule(models.Model):
    """ "Have N instances ready at <time> for <duration>": the pool of the lab holds at least `count`
    running instances from `starts_at` (started early enough to be running then) until it ends."""

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="ready_schedules")
    count = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_READY_INSTANCES)]
    )
    starts_at = models.DateTimeField(help_text="When the instances must be running.")
    duration_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(5), MaxValueValidator(7 * 24 * 60)],
        help_text="How long the pool keeps this many ready after the start time.",
    )

    class Meta:
        ordering = ["starts_at", "id"]

    def __str__(self) -> str:
        return f"{self.count} ready for {self.lab} at {self.starts_at:%Y-%m-%d %H:%M}"


class LabMachine(models.Model):
    """One virtual machine of a lab's network."""

    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="machines")
    name = models.CharField(
        max_length=63,
        validators=[validate_dns_label],
        help_text="Host name inside the lab (lower-case letters, digits, hyphens).",
    )

    class Kind(models.TextChoices):
        VM = "vm", "virtual machine"
        CONTAINER = "container", "container"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.VM)
    image = models.ForeignKey(
        VMImage,
        on_delete=models.PROTECT,
        related_name="machines",
        null=True,
        blank=True,
        help_text="The VM image (virtual machines only).",
    )
    # Container machines (kind "container"): any OCI image, run as a Pod (labs/manifests.py make_pod).
    container_image = models.CharField(
        "container image",
        max_length=255,
        blank=True,
        validators=[validate_oci_reference],
        help_text="OCI image reference, e.g. registry.example.org/labs/tools:1 (containers only).",
    )
    command = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text='Replaces the image\'s entrypoint, e.g. ["sleep", "infinity"] (containers only).',
    )
    args = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="Replaces the image's arguments (containers only).",
    )
    env = models.JSONField(
        "environment",
        default=dict,
        blank=True,
        validators=[validate_environment],
        help_text='Variables, e.g. {"GREETING": "hello"} (containers only).',
    )
    shell_user = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_shell_user],
        help_text="The user the terminal's shell runs as: a numeric id runs the whole container as it; "
        "a name must exist in the image (containers only; empty: the image's user).",
    )
    ports = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_ports],
        help_text="Ports the other machines use, e.g. [80] (containers only; documentation for the Pod).",
    )
    cores = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_CORES_PER_MACHINE)]
    )
    memory_mib = models.PositiveIntegerField(
        "memory (MiB)",
        default=512,
        validators=[MinValueValidator(16), MaxValueValidator(MAX_MEMORY_MIB_PER_MACHINE)],
    )
    cloud_init_user_data = models.TextField(
        "extra cloud-init user data",
        blank=True,
        validators=[validate_cloud_init_user_data],
        help_text="#cloud-config merged after the generated login password (optional): a YAML mapping, "
        "at most 64 KiB and 32 levels deep, no aliases.",
    )
    order = models.PositiveIntegerField(default=0)
    opens_first = models.BooleanField(default=False, help_text="Shown first when a student opens the lab.")

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["lab", "name"],
                name="labs_labmachine_unique_name_per_lab",
                violation_error_message="A lab cannot have two machines with the same name.",
            ),
            models.UniqueConstraint(
                fields=["lab"],
                condition=Q(opens_first=True),
                name="labs_labmachine_one_opens_first_per_lab",
                violation_error_message="Only one machine of a lab can open first.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.lab.slug}/{self.name}"

    @property
    def is_container(self) -> bool:
        return self.kind == self.Kind.CONTAINER

    def _clean_kind(self) -> dict[str, str]:
        # `self.image`, not `image_id`: an image assigned but not saved yet (a lab file's images.yaml,
        # checked before anything is written) counts as given.
        if self.is_container:
            errors = {}
            if not self.container_image:
                errors["container_image"] = "A container machine needs a container image."
            if self.image is not None:
                errors["image"] = "A container machine has no VM image: leave it empty."
            if self.cloud_init_user_data:
                errors["cloud_init_user_data"] = "Containers do not run cloud-init: leave it empty."
            return errors
        errors = {}
        if self.image is None:
            errors["image"] = "A virtual machine needs a VM image."
        for field_name in ("container_image", "command", "args", "env", "shell_user", "ports"):
            if getattr(self, field_name):
                errors[field_name] = "Only container machines have this: leave it empty."
        return errors

    def clean(self) -> None:
        errors = self._clean_kind()
        image = self.image
        if image is not None:
            if self.memory_mib is not None and self.memory_mib < image.min_memory_mib:
                errors["memory_mib"] = f"The image {image.name} needs at least {image.min_memory_mib} MiB."
            if self.cores is not None and self.cores < image.min_cores:
                errors["cores"] = f"The image {image.name} needs at least {image.min_cores} cores."
            if not self.is_container and not image.has_ssh_server and self.lab_id and self._has_step_checks():
                errors["image"] = (
                    f"Checks need an SSH server in the image: steps of this lab's tutorials check the "
                    f"machine {self.name}, and {image.name} has none."
                )
        if errors:
            raise ValidationError(errors)

    def _has_step_checks(self) -> bool:
        # Through the reverse relations the tutorials app declares (it depends on labs, not back).
        return self.lab.tutorials.filter(pages__steps__step_check__machine=self.name).exists()


class LabInstanceQuerySet(models.QuerySet):
    def active(self) -> LabInstanceQuerySet:
        return self.filter(status__in=LabInstance.ACTIVE_STATUSES)

    def visible_to(self, user) -> LabInstanceQuerySet:
        return self if user.is_staff else self.filter(owner=user)


class LabInstance(models.Model):
    """A student's private, running copy of a lab, in its own namespace.

    The status only changes through `labs.lifecycle`, which checks each transition.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    class PendingAction(models.TextChoices):
        """A pause or resume the cluster answered but has not confirmed yet (KubeVirt writes a VMI's
        Paused condition a moment after the pause call returns)."""

        NONE = "", "None"
        PAUSE = "pause", "Pause"
        RESUME = "resume", "Resume"

    # Statuses in which the instance may hold cluster resources, and counts against limits.
    ACTIVE_STATUSES = (Status.REQUESTED, Status.STARTING, Status.RUNNING, Status.PAUSED, Status.STOPPING)

    lab = models.ForeignKey(Lab, on_delete=models.PROTECT, related_name="instances")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lab_instances"
    )
    # Set once when the instance is created and never recomputed: the prefix of the lab may change later.
    namespace = models.CharField(max_length=63, unique=True, null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # While `requested`: the process driving the start renews this; once it passes, nobody does (the
    # process died) and the start is rolled back. Null on rows from before leases (start timeout then).
    start_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Why it failed: the cluster's exact words for staff, and the same in plain words for the student
    # (no internal addresses, no client library text).
    last_error = models.TextField(blank=True)
    last_error_plain = models.TextField("last error (plain words)", blank=True)
    # Until the cluster confirms it, the status shows what was asked for, not what the cluster says.
    pending_action = models.CharField(max_length=8, choices=PendingAction.choices, default="", blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    # Started ahead for the lab's pool, owned by the pool account, waiting for a student's start.
    # Cleared, with the owner changed, by the one conditional UPDATE that hands it over.
    pooled = models.BooleanField(default=False, db_index=True, editable=False)
    handed_over_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the cluster last told us something new about it (its watch, or a refresh): with the
    # watcher's heartbeat (ClusterWatch) this says how old the status shown is.
    observed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = LabInstanceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "status"]), models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.lab.slug} #{self.pk} ({self.owner}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class InstanceMachine(models.Model):
    """A machine as it was when the instance started, with the login generated for it.

    A copy, not a reference: instructors may edit the lab while students' instances run.
    The password is also in the instance's cluster Secret; only the owner and staff may read it.
    """

    instance = models.ForeignKey(LabInstance, on_delete=models.CASCADE, related_name="machines")
    name = models.CharField(max_length=63)
    image_reference = models.CharField(max_length=255)
    cores = models.PositiveSmallIntegerField()
    memory_mib = models.PositiveIntegerField()
    username = models.CharField(max_length=32)
    password = models.CharField(max_length=128)
    has_vnc = models.BooleanField()
    has_serial_console = models.BooleanField()
    # "vm" or "container" (LabMachine.Kind), and what a container machine's Pod is built from.
    kind = models.CharField(max_length=16, default="vm")
    command = models.JSONField(default=list, blank=True)
    args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    has_ssh_server = models.BooleanField(default=False)
    # The public half of the SSH host key the app generated for this machine (its private half went
    # to the guest with cloud-init): checks trust exactly this key, never the first one they see.
    ssh_host_public_key = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)
    opens_first = models.BooleanField(default=False)
    # Its VMI as the cluster last reported it (labs.watcher, or a refresh): written only through
    # labs.lifecycle; observed_at is null until the cluster was first read.
    phase = models.CharField(max_length=32, blank=True, editable=False)
    ip_address = models.CharField(max_length=45, blank=True, editable=False)
    paused = models.BooleanField(default=False, editable=False)
    ready = models.BooleanField(default=False, editable=False)
    # Why it does not run (yet), labs.machine_reasons: our code, and the cluster's words for staff.
    problem_code = models.CharField(max_length=32, blank=True, editable=False)
    problem_fatal = models.BooleanField(default=False, editable=False)
    problem_reason = models.CharField(max_length=255, blank=True, editable=False)
    problem_message = models.TextField(blank=True, editable=False)
    # While the cluster pulls its images (where it reports it: the embedded cluster does).
    pull_percent = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    pull_message = models.CharField(max_length=512, blank=True, editable=False)
    observed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "name"], name="labs_instancemachine_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}/{self.name}"

    def offers(self, console: str) -> bool:
        """Whether the machine has this kind of console: "vnc", "serial" (VMs, from the image) or
        "terminal" (a shell in a container machine, through pods/exec)."""
        if console == "terminal":
            return self.kind == "container"
        if console == "vnc":
            return self.has_vnc
        return console == "serial" and self.has_serial_console


class Installation(models.Model):
    """This installation's id, generated once: every object it creates in the cluster carries it, so
    several installations can share a cluster and each touches only its own (labs.installation).

    One row, shared by every replica through the database; INSTALLATION_ID overrides it.
    """

    ROW_ID = 1

    uid = models.CharField("installation id", max_length=63, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="labs_installation_single_row")]

    def __str__(self) -> str:
        return self.uid


class ClusterWatch(models.Model):
    """The heartbeat of the process that watches the cluster (labs.watcher): pages read status from
    the database, and this row says whether that status is current.

    `heartbeat_at`: the watcher is alive. `synced_at`: every watch was connected and caught up then.
    `unreachable_since`: the start of the current outage (null while the cluster answers).
    """

    name = models.CharField(max_length=63, unique=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    unreachable_since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"watch of cluster {self.name}"


class InstanceCheckKey(models.Model):
    """The key pair checks log in with, one per instance. The public key goes to the machines with
    cloud-init (for the check user); the private key never leaves the server and is deleted when
    the instance stops (and with the instance)."""

    instance = models.OneToOneField(LabInstance, on_delete=models.CASCADE, related_name="check_key")
    private_key = models.TextField()
    public_key = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"check key of instance {self.instance_id}"
