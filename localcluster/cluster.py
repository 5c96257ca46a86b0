"""The cluster's behaviour, independent of HTTP: what each verb does to each kind, and the controllers
a real cluster runs behind the API (namespace finalization, virt-controller, the quota controller).

The server (`server.py`) turns requests into calls here; everything raises `ApiError` for failures.
All methods run on the server's event loop. The synchronous ones never await, so each is atomic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import json
import logging
import secrets
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from localcluster import dns, errors, launcher, patching, pods, quota
from localcluster.admission import AdmissionPolicies, AdmissionRequest
from localcluster.containers.images import ContainerImages
from localcluster.containers.runner import ContainerRunner, PodReport
from localcluster.errors import ApiError, Cause
from localcluster.faults import Faults
from localcluster.podvalidation import validate_pod, validate_pod_update
from localcluster.rbac import Authorizer, RoleNotFound, User
from localcluster.registry.pull import ImageCache
from localcluster.resources import (
    EVENTS,
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    RBAC_GROUP,
    RESOURCE_QUOTAS,
    RESOURCE_TYPES,
    ROLE_BINDINGS,
    SECRETS,
    SERVICES,
    VIRTUAL_MACHINE_INSTANCES,
    ResourceType,
)
from localcluster.runtimes import (
    DialFailed,
    NamespaceNetwork,
    NotSupported,
    PhaseUpdate,
    Runtime,
    StreamKind,
    StreamUnavailable,
    image_not_found,
    make_runtime,
    vmi_images,
)
from localcluster.selectors import field_matcher, label_matcher
from localcluster.store import Obj, Store, new_uid, now_timestamp
from localcluster.validation import (
    Schemas,
    admit_vmi,
    check_quantities,
    check_schema,
    drop_nulls,
    validate_labels,
    validate_name,
    validate_role_binding,
)

log = logging.getLogger(__name__)

VMI = VIRTUAL_MACHINE_INSTANCES
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
VMI_FINALIZER = "foregroundDeleteVirtualMachine"
GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver's name generator uses
POD_NETWORK = ipaddress.IPv4Network("10.244.0.0/16")
NODE_NAME = "localcluster"
# The kubelet's image pull back-off (pkg/kubelet/images: 10 s doubling to 5 min). It reports
# ErrImagePull when a pull fails, and ImagePullBackOff from its next sync until the next attempt.
IMAGE_PULL_BACKOFF_SECONDS = (10.0, 300.0)
IMAGE_PULL_NEXT_SYNC_SECONDS = 1.0
PULLING_REASON = "Pulling"  # the kubelet's event reason while it pulls
# virt-handler's reason on a failed SyncVMI (pkg/virt-handler/vm.go handleSyncError).
SYNC_FAILED_REASON = "Synchronizing with the Domain failed."
SERVICE_NETWORK = ipaddress.IPv4Network("10.96.0.0/16")
# Service addresses start after .10, kube-dns's address on a kubeadm cluster, which the qemu runtime's
# lab networks answer DNS on (localcluster/qemu/network.py).
FIRST_SERVICE_IP_OFFSET = 11
POD_SECURITY_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
# What Pod Security admission finds wrong with a virt-launcher pod at each level below privileged.
# The pod modelled is a root launcher (KubeVirt's compute container adds SYS_NICE and runs as UID 0,
# pkg/virt-controller/services/rendercontainer.go), the case virt-controller reports as "needs a
# privileged namespace to run" (pkg/virt-controller/watch/vmi/lifecycle.go). Messages as
# k8s.io/pod-security-admission/policy words them.
LAUNCHER_POD_SECURITY_VIOLATIONS = {
    "baseline": 'non-default capabilities (container "compute" must not include "SYS_NICE" in '
    "securityContext.capabilities.add)",
    "restricted": 'allowPrivilegeEscalation != false (container "compute" must set '
    "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "
    '"compute" must set securityContext.capabilities.drop=["ALL"]; container "compute" must not '
    'include "SYS_NICE" in securityContext.capabilities.add), runAsNonRoot != true (pod or container '
    '"compute" must set securityContext.runAsNonRoot=true), runAsUser=0 (pod and container "compute" '
    'must not set runAsUser=0), seccompProfile (pod or container "compute" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
}


@dataclass
class ClusterOptions:
    runtime: str = "none"
    runtime_options: dict[str, Any] = field(default_factory=dict)
    # How long the namespace controller waits before emptying a Terminating namespace. Real clusters
    # take seconds; tests use a few milliseconds.
    finalize_delay: float = 0.05
    # The KubeVirt CR's spec.configuration: how launcher pods are sized (localcluster/launcher.py).
    kubevirt: launcher.KubeVirtConfig = field(default_factory=launcher.KubeVirtConfig)
    # How long after a pause/unpause answer the VMI's Paused condition follows: virt-handler writes it
    # at its next sync, not in the request (pkg/virt-handler/vm.go, updatePausedConditions).
    pause_condition_delay: float = 0.1
    # Watch events kept for resuming from a resourceVersion (older ones answer 410 Gone).
    watch_history: int = 10000
    # Namespaces that exist from the start besides the system ones (where the app's account lives).
    extra_namespaces: tuple[str, ...] = ()
    # The Pod Security level enforced in namespaces without the enforce label (the admission
    # configuration's `defaults.enforce`; Kubernetes' own default is privileged).
    pod_security_default: str = "privileged"
    # Seconds before a new RoleBinding grants anything. kube-apiserver's RBAC authorizer reads
    # bindings from an informer cache fed by a watch, so a request right after the create may still
    # be refused (Kubernetes' e2e framework polls up to 5 s for it: test/e2e/framework/auth/helpers.go).
    rbac_propagation_delay: float = 0.0
    # Where pods' containers keep their bundles and runc state (crash clean-up reads it at start).
    state_dir: Path | None = None
    # OCI image layouts pods' images resolve to before their registries (localcluster/containers/images.py).
    container_images: Path | None = None
    # Registries pods' images may be pulled from over plain HTTP (loopback ones always may).
    insecure_registries: tuple[str, ...] = ()
    pull_timeout: float = 600.0


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


def _random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(GENERATE_NAME_ALPHABET) for _ in range(length))


def _launcher_pod_name(vmi: Obj) -> str:
    """Stable per VMI, so repeated refusals aggregate into one event (count++) as on a real cluster."""
    digest = hashlib.sha256(vmi["metadata"]["uid"].encode()).digest()
    suffix = "".join(GENERATE_NAME_ALPHABET[b % len(GENERATE_NAME_ALPHABET)] for b in digest[:5])
    return f"virt-launcher-{vmi['metadata']['name']}-{suffix}"


@dataclass
class _LauncherPod:
    """A VMI's virt-launcher pod once it exists: what it counts against quota and the node."""

    name: str
    resources: quota.PodResources
    scheduled: bool = False
    task: asyncio.Task[None] | None = None


def _body_without(obj: Obj, *keys: str) -> Obj:
    return {k: v for k, v in obj.items() if k not in keys}


class Cluster:
    def __init__(
        self,
        schemas: Schemas,
        options: ClusterOptions | None = None,
        faults: Faults | None = None,
        authorizer: Authorizer | None = None,
        policies: AdmissionPolicies | None = None,
    ) -> None:
        self.options = options or ClusterOptions()
        self.faults = faults or Faults()
        self.store = Store(history=self.options.watch_history)
        self.schemas = schemas
        # RoleBinding writes are checked against escalation with the same RBAC the server enforces.
        self.authorizer = authorizer or Authorizer()
        self.policies = policies or AdmissionPolicies()
        self.runtime: Runtime = make_runtime(
            self.options.runtime, self._on_phase, **self.options.runtime_options
        )
        self.runtime.read_secret = self._read_secret  # type: ignore[method-assign]
        state_dir = self.options.state_dir or Path(tempfile.mkdtemp(prefix="localcluster-"))
        self.containers = ContainerRunner(
            self._on_pod_report,
            state_dir=state_dir,
            images=ContainerImages(
                self.options.container_images,
                cache=self.runtime.image_cache() or ImageCache(state_dir / "pulls"),
                insecure_registries=frozenset(self.options.insecure_registries),
                timeout=self.options.pull_timeout,
            ),
            network_for=self.runtime.pod_network,
            read_secret=self._read_secret,
        )
        self._pod_terminations: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._networks: dict[str, NamespaceNetwork] = {}
        self._launchers: dict[tuple[str, str], _LauncherPod] = {}  # VMIs whose launcher pod exists
        self._blocked: dict[tuple[str, str], None] = {}  # VMIs waiting for quota, in creation order
        self._unschedulable: dict[tuple[str, str], None] = {}  # pods waiting for room on the node
        self._pull_wakeup = asyncio.Event()  # set when images may have appeared: retry pulls now
        self._terminations: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._paused_domains: set[tuple[str, str]] = set()  # what the guests are, ahead of the conditions
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_service_ip = FIRST_SERVICE_IP_OFFSET
        self._published_names: dict[str, dict[str, list[str]]] = {}
        # RoleBindings (by uid) the authorizer does not see yet: monotonic time they start granting.
        self._bindings_pending: dict[str, float] = {}
        for name in (*SYSTEM_NAMESPACES, *self.options.extra_namespaces):
            if not self.store.exists(NAMESPACES, "", name):
                self._store_new(NAMESPACES, self._new_namespace(name))

    # -- helpers -----------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _new_namespace(self, name: str) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _store_new(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now_timestamp()
        if rt.has_generation:
            meta["generation"] = 1
        return self.store.create(rt, obj)

    def _require(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt, namespace, name)
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def _check_namespace_accepts(self, rt: ResourceType, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission plugin."""
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise errors.not_found(NAMESPACES, namespace)
        if ns.get("status", {}).get("phase") == "Terminating":
            raise errors.forbidden(
                rt,
                name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
                [
                    Cause(
                        "NamespaceTerminating",
                        f"namespace {namespace} is being terminated",
                        "metadata.namespace",
                    )
                ],
            )

    def _check_type_meta(self, rt: ResourceType, body: Obj) -> None:
        if body.get("apiVersion", rt.api_version) != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the "
                f"expected API version ({rt.api_version})"
            )
        if body.get("kind", rt.kind) != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({body['kind']}) does not match the expected kind ({rt.kind})"
            )
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind

    def _decode(self, rt: ResourceType, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                "json: cannot unmarshal non-object into Go value"
            )
        body = drop_nulls(body)
        self._check_type_meta(rt, body)
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return body

    def _validate(self, rt: ResourceType, obj: Obj, field_validation: str) -> tuple[Obj, list[str]]:
        name = obj["metadata"].get("name", "")
        checked = check_schema(self.schemas, rt, obj, name, field_validation)
        obj = checked.obj
        causes = validate_name(rt, name) + validate_labels(obj["metadata"].get("labels"))
        if causes:
            raise errors.invalid(rt, name, causes)
        if rt is RESOURCE_QUOTAS:
            check_quantities(rt, obj, [("spec", "hard")], name)
        if rt is ROLE_BINDINGS and (causes := validate_role_binding(obj)):
            raise errors.invalid(rt, name, causes)
        if rt is VMI:
            check_quantities(
                rt,
                obj,
                [("spec", "domain", "resources", "requests"), ("spec", "domain", "resources", "limits")],
                name,
            )
            admit_vmi(obj)
        if rt is PODS:
            validate_pod(obj)
        return obj, checked.warnings

    # -- admission ---------------------------------------------------------------------------------
    def role_bindings_in(self, namespace: str) -> list[Obj]:
        """The RoleBindings of a namespace the authorizer sees: its run-time grants."""
        bindings = self.store.list(ROLE_BINDINGS, namespace)
        if not self._bindings_pending:
            return bindings
        now = time.monotonic()
        seen = []
        for binding in bindings:
            uid = binding["metadata"]["uid"]
            ready_at = self._bindings_pending.get(uid)
            if ready_at is not None and now < ready_at:
                continue
            self._bindings_pending.pop(uid, None)
            seen.append(binding)
        return seen

    def _check_escalation(self, user: User, namespace: str, binding: Obj) -> None:
        """RoleBinding storage refuses to grant what the user could not grant
        (pkg/registry/rbac/rolebinding/policybased/storage.go): before validation, as there."""
        role_ref = binding.get("roleRef") if isinstance(binding.get("roleRef"), dict) else {}
        name = binding["metadata"].get("name", "")
        try:
            refusal = self.authorizer.escalation_refusal(user, namespace, role_ref)
        except RoleNotFound as missing:
            raise ApiError(
                404, "NotFound", str(missing), name=missing.name, group=RBAC_GROUP, kind=missing.plural
            ) from missing
        except ValueError as unsupported:
            raise ApiError(500, "InternalError", str(unsupported)) from unsupported
        if refusal:
            raise errors.forbidden(ROLE_BINDINGS, name, refusal)

    def _admit(
        self, operation: str, rt: ResourceType, namespace: str, obj: Obj | None, old: Obj | None, user: User
    ) -> list[str]:
        """Validating admission policies; returns their warnings or raises their refusal."""
        if not self.policies.bindings:
            return []
        name = (obj or old or {}).get("metadata", {}).get("name", "")
        return self.policies.admit(
            AdmissionRequest(
                operation=operation,
                user=user,
                resource=rt,
                namespace=namespace if rt.namespaced else "",
                name=name,
                object=obj,
                old_object=old,
                namespace_object=self.store.get(NAMESPACES, "", namespace) if rt.namespaced else None,
            )
        )

    # -- create ------------------------------------------------------------------------------------
    def create(
        self, rt: ResourceType, namespace: str, body: Any, field_validation: str = "Warn", *, user: User
    ) -> tuple[Obj, list[str]]:
        obj = self._decode(rt, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_random_suffix()}"
        name = meta.get("name", "")
        if rt.namespaced:
            self._check_namespace_accepts(rt, namespace, name)
        for server_field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
        ):
            meta.pop(server_field, None)
        if rt is ROLE_BINDINGS:
            self._check_escalation(user, namespace, obj)
        obj, warnings = self._validate(rt, obj, field_validation)
        obj = self._prepare(rt, obj, None)
        warnings += self._admit("CREATE", rt, namespace, obj, None, user)
        self._check_count_quota(rt, namespace, name)
        if rt is PODS:
            self._check_pod_quota(namespace, obj)
        if self.store.exists(rt, namespace if rt.namespaced else "", name):
            raise errors.already_exists(rt, name)
        created = self._store_new(rt, obj)
        if rt is ROLE_BINDINGS and self.options.rbac_propagation_delay:
            ready_at = time.monotonic() + self.options.rbac_propagation_delay
            self._bindings_pending[created["metadata"]["uid"]] = ready_at
        self._after_change(rt, namespace, created, None)
        return created, warnings

    def _check_count_quota(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        for q in self.store.list(RESOURCE_QUOTAS, namespace):
            hard = q.get("spec", {}).get("hard") or {}
            keys = [k for k in quota.count_keys(rt) if k in hard]
            if not keys:
                continue
            used = {k: Fraction(self.store.count(rt, namespace)) for k in keys}
            message = quota.exceeded_message(
                q["metadata"]["name"], hard, used, dict.fromkeys(keys, Fraction(1))
            )
            if message:
                raise errors.forbidden(rt, name, message)

    def _check_pod_quota(self, namespace: str, pod: Obj) -> None:
        """The ResourceQuota admission plugin on a pod: refused at create (403), nothing stored."""
        refusal = self._pod_quota_refusal(namespace, pods.quota_containers(pod))
        if refusal:
            raise errors.forbidden(PODS, pod["metadata"].get("name", ""), refusal)

    # -- kind-specific preparation (defaults, server-owned fields) ---------------------------------
    def _prepare(self, rt: ResourceType, obj: Obj, current: Obj | None) -> Obj:
        if rt is NAMESPACES:
            # The apiserver (re)sets this label on every write, which is what makes it immutable.
            obj["metadata"].setdefault("labels", {})[NAMESPACE_NAME_LABEL] = obj["metadata"]["name"]
            obj["spec"] = current["spec"] if current else {"finalizers": ["kubernetes"]}
            obj["status"] = current["status"] if current else {"phase": "Active"}
        elif rt is SECRETS:
            self._prepare_secret(obj)
        elif rt is RESOURCE_QUOTAS:
            # Computed right away (the real quota controller takes a moment) so the response is current.
            obj["status"] = self._quota_status(
                obj["metadata"]["namespace"], obj.get("spec", {}).get("hard") or {}
            )
        elif rt is SERVICES:
            self._prepare_service(obj, current)
        elif rt is NETWORK_POLICIES:
            spec = obj.setdefault("spec", {})
            if "policyTypes" not in spec:
                spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        elif rt is VMI:
            self._prepare_vmi(obj, current)
        elif rt is PODS:
            if current is None:
                obj = pods.default_pod(obj)
            else:
                validate_pod_update(obj, current)
                obj["status"] = current.get("status", {})
        return obj

    def _prepare_secret(self, obj: Obj) -> None:
        data = obj.get("data") or {}
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise errors.bad_request(
                    f'Secret in version "v1" cannot be handled as a Secret: illegal '
                    f"base64 data in data[{key!r}]"
                ) from exc
        # The apiserver folds stringData into data and never stores stringData.
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            obj["data"] = data
        obj.setdefault("type", "Opaque")

    def _prepare_service(self, obj: Obj, current: Obj | None) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if current is not None:
            spec["clusterIP"] = current["spec"].get("clusterIP")
            spec["clusterIPs"] = current["spec"].get("clusterIPs")
        elif spec.get("clusterIP") != "None":
            ip = str(SERVICE_NETWORK.network_address + self._next_service_ip)
            self._next_service_ip += 1
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        obj["status"] = {"loadBalancer": {}}

    def _prepare_vmi(self, obj: Obj, current: Obj | None) -> None:
        if current is not None:
            # virt-api's update admitter: only metadata may change once a VMI exists.
            if obj.get("spec") != current.get("spec"):
                error = errors.invalid(
                    VMI,
                    obj["metadata"]["name"],
                    [Cause("FieldValueNotSupported", "update of VMI object is restricted", "spec")],
                )
                error.message = (
                    'admission webhook "virtualmachineinstances-update-validator.kubevirt.io" '
                    "denied the request: update of VMI object is restricted"
                )
                raise error
            obj["status"] = current.get("status", {})
            obj["metadata"]["finalizers"] = current["metadata"].get("finalizers", [])
            return
        # Defaults KubeVirt's mutating webhook applies (pkg/defaults/defaults.go).
        spec = obj["spec"]
        resources = spec["domain"].get("resources") or {}
        if "cpu" in (resources.get("limits") or {}) and "cpu" not in (resources.get("requests") or {}):
            # setDefaultResourceRequests: a CPU limit without a request requests the limit.
            resources.setdefault("requests", {})["cpu"] = resources["limits"]["cpu"]
        devices = spec["domain"].setdefault("devices", {})
        if (
            not spec.get("networks")
            and not devices.get("interfaces")
            and devices.get("autoattachPodInterface", True)
        ):
            spec["networks"] = [{"name": "default", "pod": {}}]
            devices["interfaces"] = [{"name": "default", "bridge": {}}]
        for device in devices.get("inputs") or []:
            if not device.get("bus"):
                device["bus"] = "usb"
        spec["domain"].setdefault("machine", {"type": "q35"})
        firmware = spec["domain"].setdefault("firmware", {})
        firmware.setdefault("uuid", str(uuid.uuid4()))
        meta = obj["metadata"]
        if VMI_FINALIZER not in meta.setdefault("finalizers", []):
            meta["finalizers"].append(VMI_FINALIZER)
        annotations = meta.setdefault("annotations", {})
        annotations.setdefault("kubevirt.io/latest-observed-api-version", "v1")
        annotations.setdefault("kubevirt.io/storage-observed-api-version", "v1")
        obj["status"] = {}

    def _read_secret(self, namespace: str, name: str) -> Obj | None:
        """For runtimes that resolve Secret references (cloud-init's userDataSecretRef)."""
        return self.store.get(SECRETS, namespace, name)

    # -- read --------------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        return self._require(rt, namespace, name)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        labels_match = label_matcher(label_selector)
        fields_match = field_matcher(field_selector, rt.plural)
        items = [o for o in self.store.list(rt, namespace) if labels_match(o) and fields_match(o)]
        rv = self.store.resource_version
        start = 0
        if continue_token:
            try:
                rv_text, start_text = base64.urlsafe_b64decode(continue_token.encode()).decode().split(":")
                rv, start = int(rv_text), int(start_text)
            except (ValueError, binascii.Error) as exc:
                raise errors.bad_request(f"continue key is not valid: {continue_token}") from exc
        result = ListResult(items[start:], rv)
        if limit and len(result.items) > limit:
            result.remaining = len(result.items) - limit
            result.items = result.items[:limit]
            token = f"{rv}:{start + limit}".encode()
            result.continue_token = base64.urlsafe_b64encode(token).decode()
        return result

    # -- update / patch ----------------------------------------------------------------------------
    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        field_validation: str = "Warn",
        *,
        user: User,
    ) -> tuple[Obj, list[str]]:
        current = self._require(rt, namespace if rt.namespaced else "", name)
        obj = self._decode(rt, namespace, body)
        return self._update(rt, current, obj, field_validation, require_rv=rt.custom, user=user)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        field_validation: str = "Warn",
        *,
        user: User,
    ) -> tuple[Obj, list[str]]:
        current = self._require(rt, namespace if rt.namespaced else "", name)
        if rt.custom and content_type == patching.STRATEGIC:
            # Custom resources have no patch strategies to merge by: apiextensions-apiserver's
            # customresource_handler.go lists JSON patch, merge patch and apply as their patch types.
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{patching.JSON_PATCH}, {patching.MERGE}, application/apply-patch+yaml",
            )
        if content_type == patching.JSON_PATCH:
            patched = patching.json_patch(current, patch)
        elif content_type in (patching.MERGE, patching.STRATEGIC):
            if not isinstance(patch, dict):
                raise errors.bad_request("patch body must be a JSON object")
            patched = patching.merge_patch(current, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {patching.JSON_PATCH}, "
                f"{patching.MERGE}, {patching.STRATEGIC}",
            )
        obj = self._decode(rt, namespace, patched)
        return self._update(rt, current, obj, field_validation, require_rv=False, user=user)

    def _update(
        self, rt: ResourceType, current: Obj, obj: Obj, field_validation: str, require_rv: bool, user: User
    ) -> tuple[Obj, list[str]]:
        meta, current_meta = obj["metadata"], current["metadata"]
        name = current_meta["name"]
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        meta["name"] = name
        rv = meta.get("resourceVersion")
        if rv is None and require_rv:
            raise errors.invalid(
                rt,
                name,
                [
                    Cause(
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                        "metadata.resourceVersion",
                    )
                ],
            )
        if rv is not None and str(rv) != current_meta["resourceVersion"]:
            raise errors.conflict(rt, name)
        for server_field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if server_field in current_meta:
                meta[server_field] = current_meta[server_field]
            else:
                meta.pop(server_field, None)
        namespace = current_meta.get("namespace", "")
        if rt is ROLE_BINDINGS:
            self._check_escalation(user, namespace, obj)
        obj, warnings = self._validate(rt, obj, field_validation)
        if rt is ROLE_BINDINGS and obj.get("roleRef") != current.get("roleRef"):
            raise errors.invalid(
                rt,
                name,
                [
                    Cause(
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(obj.get('roleRef'))}: cannot change roleRef",
                        "roleRef",
                    )
                ],
            )
        obj = self._prepare(rt, obj, current)
        if rt.has_generation and _body_without(obj, "metadata", "status") != _body_without(
            current, "metadata", "status"
        ):
            meta["generation"] = current_meta.get("generation", 1) + 1
        meta["resourceVersion"] = current_meta["resourceVersion"]
        warnings += self._admit("UPDATE", rt, namespace, obj, current, user)
        if obj == current:
            return current, warnings  # a no-op write is not stored: same resourceVersion, no event
        updated = self.store.replace(rt, obj)
        self._after_change(rt, updated["metadata"].get("namespace", ""), updated, current)
        return updated, warnings

    # -- delete ------------------------------------------------------------------------------------
    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Obj | None = None, *, user: User
    ) -> Obj:
        """The object (kinds that finish deleting later) or a Success Status, as the real API returns."""
        current = self._require(rt, namespace if rt.namespaced else "", name)
        preconditions = (options or {}).get("preconditions") or {}
        if preconditions.get("uid") not in (None, current["metadata"]["uid"]):
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID "
                f"in object meta: {current['metadata']['uid']}",
                name=name,
                group=rt.group,
                kind=rt.plural,
            )
        if preconditions.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
            raise ApiError(
                409,
                "Conflict",
                "Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                f"{current['metadata']['resourceVersion']}",
                name=name,
                group=rt.group,
                kind=rt.plural,
            )
        self._admit("DELETE", rt, namespace, None, current, user)
        if rt is NAMESPACES:
            return self._delete_namespace(current)
        if rt is VMI:
            return self._delete_vmi(current)
        if rt is PODS:
            return self._delete_pod(current, (options or {}).get("gracePeriodSeconds"))
        self.store.remove(rt, namespace, name)
        self._after_change(rt, namespace, None, current)
        details: Obj = {"name": name, "kind": rt.plural, "uid": current["metadata"]["uid"]}
        if rt.group:
            details["group"] = rt.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def delete_collection(
        self, rt: ResourceType, namespace: str, label_selector: str, field_selector: str, *, user: User
    ) -> Obj:
        matched = self.list(rt, namespace, label_selector, field_selector).items
        items = []
        for obj in matched:
            result = self.delete(rt, namespace, obj["metadata"]["name"], user=user)
            items.append(result if result.get("kind") != "Status" else obj)
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": items,
        }

    def _mark_deleting(self, rt: ResourceType, obj: Obj) -> Obj:
        if not obj["metadata"].get("deletionTimestamp"):
            obj["metadata"]["deletionTimestamp"] = now_timestamp()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            if rt is NAMESPACES:
                obj["status"]["phase"] = "Terminating"
            obj = self.store.replace(rt, obj)
        return obj

    def _delete_namespace(self, ns: Obj) -> Obj:
        first_time = not ns["metadata"].get("deletionTimestamp")
        ns = self._mark_deleting(NAMESPACES, ns)
        if first_time:
            self._spawn(self._finalize_namespace(ns["metadata"]["name"]))
        return ns

    async def _finalize_namespace(self, namespace: str) -> None:
        """The namespace controller: empty the namespace, then remove it."""
        await asyncio.sleep(self.options.finalize_delay)
        for vmi in self.store.list(VMI, namespace):
            self._delete_vmi(vmi)
        for pod in self.store.list(PODS, namespace):
            self._delete_pod(pod, 0)
        pending = [t for (ns, _), t in list(self._terminations.items()) if ns == namespace]
        pending += [t for (ns, _), t in list(self._pod_terminations.items()) if ns == namespace]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for rt in RESOURCE_TYPES:
            if rt.namespaced and rt is not VMI and rt is not PODS:
                for obj in self.store.list(rt, namespace):
                    self.store.remove(rt, namespace, obj["metadata"]["name"])
        await self.runtime.namespace_deleted(namespace)
        await self.containers.namespace_deleted(namespace)
        self._networks.pop(namespace, None)
        self._published_names.pop(namespace, None)
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is not None:
            ns["spec"]["finalizers"] = []
            self.store.replace(NAMESPACES, ns)
            self.store.remove(NAMESPACES, "", namespace)

    def _delete_vmi(self, vmi: Obj) -> Obj:
        vmi = self._mark_deleting(VMI, vmi)
        self._publish_names(vmi["metadata"]["namespace"])
        key = (vmi["metadata"]["namespace"], vmi["metadata"]["name"])
        if key not in self._terminations:
            self._terminations[key] = self._spawn(self._terminate_vmi(*key))
        return vmi

    async def _terminate_vmi(self, namespace: str, name: str) -> None:
        """virt-handler stops the guest, then virt-controller drops the finalizer."""
        key = (namespace, name)
        try:
            self._blocked.pop(key, None)
            self._unschedulable.pop(key, None)
            pod = self._launchers.get(key)
            if pod is not None and pod.task is not None:
                pod.task.cancel()
            await self.runtime.stop(namespace, name)
            self._launchers.pop(key, None)
            self._paused_domains.discard(key)
            vmi = self.store.get(VMI, namespace, name)
            if vmi is not None:
                vmi["metadata"]["finalizers"] = []
                self.store.replace(VMI, vmi)
                self.store.remove(VMI, namespace, name)
                self._after_change(VMI, namespace, None, vmi)
        finally:
            self._terminations.pop(key, None)

    # -- after every change: quota status, blocked launchers, new VMIs ------------------------------
    def _after_change(self, rt: ResourceType, namespace: str, new: Obj | None, old: Obj | None) -> None:
        if rt is NAMESPACES and new is not None and old is not None:
            # A relabelled namespace (Pod Security level): virt-controller's next retry may succeed.
            self._retry_blocked(new["metadata"]["name"])
        if not rt.namespaced:
            return
        if rt is SERVICES or rt is VMI or rt is PODS:
            self._publish_names(namespace)
        if rt is VMI and new is not None and old is None:
            self._spawn(self._launch(namespace, new["metadata"]["name"]))
        if rt is PODS and new is not None and old is None:
            self._start_pod(namespace, new["metadata"]["name"])
        if rt is not EVENTS:
            self._refresh_quotas(namespace)
        if rt is RESOURCE_QUOTAS or (rt is VMI and new is None):
            self._retry_blocked(namespace)
        if rt is VMI and new is None:
            self._retry_unschedulable()

    def _refresh_quotas(self, namespace: str) -> None:
        for q in self.store.list(RESOURCE_QUOTAS, namespace):
            status = self._quota_status(namespace, q.get("spec", {}).get("hard") or {})
            if q.get("status") != status:
                q["status"] = status
                self.store.replace(RESOURCE_QUOTAS, q)

    def _pods_in_use(self, namespace: str) -> list[quota.PodResources]:
        """What counts against compute quota: launcher pods, and pods not yet terminal."""
        in_use = [p.resources for (ns, _), p in self._launchers.items() if ns == namespace]
        for pod in self.store.list(PODS, namespace):
            if not pods.is_terminal(pod):
                in_use.append(quota.pod_resources(pods.quota_containers(pod)))
        return in_use

    def _quota_status(self, namespace: str, hard: dict[str, Any]) -> Obj:
        launchers = self._pods_in_use(namespace)
        counts = {}
        for key in hard:
            for rt in RESOURCE_TYPES:
                if key in quota.count_keys(rt):
                    counts[key] = self.store.count(rt, namespace)
        return {"hard": dict(hard), "used": quota.used_status(hard, counts, launchers)}

    def _retry_blocked(self, namespace: str) -> None:
        for key in [k for k in self._blocked if k[0] == namespace]:
            del self._blocked[key]
            self._spawn(self._launch(*key))

    # -- virt-controller: launcher pods and phases --------------------------------------------------
    def _network(self, namespace: str) -> NamespaceNetwork:
        if namespace not in self._networks:
            used = {n.subnet for n in self._networks.values()}
            for subnet in POD_NETWORK.subnets(new_prefix=24):
                if subnet not in used:
                    self._networks[namespace] = NamespaceNetwork(namespace, subnet)
                    break
            else:
                raise ApiError(
                    500, "InternalError", "pod network exhausted: more than 256 namespaces with VMIs"
                )
        return self._networks[namespace]

    def _set_vmi_status(self, vmi: Obj, **changes: Any) -> Obj:
        status = vmi.setdefault("status", {})
        if "phase" in changes and changes["phase"] != status.get("phase"):
            status.setdefault("phaseTransitionTimestamps", []).append(
                {"phase": changes["phase"], "phaseTransitionTimestamp": now_timestamp()}
            )
        status.update(changes)
        vmi = self.store.replace(VMI, vmi)
        self._publish_names(vmi["metadata"]["namespace"])
        return vmi

    def _publish_names(self, namespace: str) -> None:
        """Cluster DNS: tell the runtime the names the namespace's headless Services now give."""
        records = dns.headless_service_records(
            namespace,
            self.store.list(SERVICES, namespace),
            self.store.list(VMI, namespace) + self.store.list(PODS, namespace),
        )
        if records != self._published_names.get(namespace, {}):
            self._published_names[namespace] = records
            self.runtime.names_changed(namespace, records)
            self.containers.names_changed(
                {
                    name: addresses
                    for records in self._published_names.values()
                    for name, addresses in records.items()
                }
            )

    def _set_condition(self, vmi: Obj, kind: str, reason: str, message: str) -> Obj:
        """A `<kind>=False` condition, as virt-controller's CheckFailure writes it: one of each type,
        left as it is while its reason stays the same (the first message stands)."""
        conditions = vmi.setdefault("status", {}).get("conditions", [])
        current = next((c for c in conditions if c.get("type") == kind), None)
        if current is not None and current.get("status") == "False" and current.get("reason") == reason:
            return vmi
        conditions = [c for c in conditions if c.get("type") != kind]
        conditions.append(
            {
                "type": kind,
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": now_timestamp(),
            }
        )
        return self._set_vmi_status(vmi, conditions=conditions)

    def _remove_condition(self, vmi: Obj, kind: str) -> Obj:
        conditions = vmi.setdefault("status", {}).get("conditions", [])
        if not any(c.get("type") == kind for c in conditions):
            return vmi
        return self._set_vmi_status(vmi, conditions=[c for c in conditions if c.get("type") != kind])

    def _namespace_context(self, namespace: str) -> launcher.NamespaceContext:
        ns = self.store.get(NAMESPACES, "", namespace) or {"metadata": {}}
        quotas = self.store.list(RESOURCE_QUOTAS, namespace)
        keys = {key for q in quotas for key in q["spec"].get("hard") or {}}
        return launcher.NamespaceContext(frozenset(keys), dict(ns["metadata"].get("labels") or {}))

    async def _launch(self, namespace: str, name: str) -> None:
        """virt-controller creates the launcher pod (ResourceQuota admission may refuse it), then
        the scheduler places it (`_schedule`), the kubelet pulls its images and starts it."""
        vmi = self.store.get(VMI, namespace, name)
        key = (namespace, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp") or key in self._launchers:
            return
        if not vmi.get("status", {}).get("phase"):
            vmi = self._set_vmi_status(vmi, phase="Pending")
        pod_name = _launcher_pod_name(vmi)
        # Pod Security admission runs before ResourceQuota, as in the API server's plugin order.
        if violation := self._pod_security_violation(namespace):
            # virt-controller words this refusal itself (pkg/virt-controller/watch/vmi/lifecycle.go).
            reason = (
                f"failed to create pod for vmi {namespace}/{name}, it needs a privileged namespace to run: "
                f'pods "{pod_name}" is forbidden: {violation}'
            )
            self._blocked[key] = None
            vmi = self._set_condition(vmi, "Synchronized", "FailedCreate", reason)
            self.record_event(vmi, "Warning", "FailedCreate", f"failed to render launch manifest: {reason}")
            return
        pod = launcher.launcher_pod(vmi, self.options.kubevirt, self._namespace_context(namespace), pod_name)
        refusal = self._pod_quota_refusal(namespace, pod.containers)
        if refusal:
            # pkg/virt-controller/watch/vmi/lifecycle.go: the condition and the event word it differently.
            self._blocked[key] = None
            error = f'pods "{pod_name}" is forbidden: {refusal}'
            vmi = self._set_condition(
                vmi, "Synchronized", "FailedCreate", f"failed to create virtual machine pod: {error}"
            )
            self.record_event(vmi, "Warning", "FailedCreate", f"Error creating pod: {error}")
            return
        self._launchers[key] = _LauncherPod(pod_name, quota.pod_resources(pod.containers))
        vmi = self._remove_condition(vmi, "Synchronized")
        # The pod exists: virt-controller moves the VMI to Scheduling until the pod is ready.
        vmi = self._set_vmi_status(vmi, phase="Scheduling")
        self._refresh_quotas(namespace)
        self.record_event(vmi, "Normal", "SuccessfulCreate", f"Created virtual machine pod {pod_name}")
        self._schedule(namespace, name)

    def _node_shortfall(self, pod: quota.PodResources) -> list[str]:
        """The scheduler's NodeResourcesFit: what the one node lacks for this pod's requests."""
        allocatable = {**(self.runtime.node_allocatable() or {}), **self.faults.node_allocatable}
        used: dict[str, Fraction] = {}
        for other in self._launchers.values():
            if other.scheduled:
                for resource, amount in other.resources.requests.items():
                    used[resource] = used.get(resource, Fraction(0)) + amount
        zero = Fraction(0)
        return [
            f"Insufficient {resource}"
            for resource in sorted(allocatable)
            if used.get(resource, zero) + pod.requests.get(resource, zero) > allocatable[resource]
        ]

    def _schedule(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        pod, vmi = self._launchers.get(key), self.store.get(VMI, namespace, name)
        if pod is None or pod.scheduled or vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        shortfall = self._node_shortfall(pod.resources)
        if shortfall:
            # The pod stays Pending with PodScheduled=False; virt-controller copies that condition
            # onto the VMI (lifecycle.go updateStatus, case IsScheduling).
            self._unschedulable[key] = None
            message = (
                f"0/1 nodes are available: 1 {', 1 '.join(shortfall)}. "
                "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            )
            self._set_condition(vmi, "PodScheduled", "Unschedulable", message)
            return
        self._unschedulable.pop(key, None)
        pod.scheduled = True
        self._remove_condition(vmi, "PodScheduled")
        pod.task = self._spawn(self._pull_and_start(namespace, name))

    def _retry_unschedulable(self) -> None:
        for key in list(self._unschedulable):
            self._schedule(*key)

    def retry_waiting(self) -> None:
        """Faults changed (a bigger node, an image now present): retry what waits for them now."""
        self._retry_unschedulable()
        self._pull_wakeup.set()
        self._pull_wakeup = asyncio.Event()

    async def _pull_backoff(self, seconds: float) -> None:
        wakeup = self._pull_wakeup
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), seconds)

    async def _pull_images(self, vmi: Obj) -> tuple[str, str] | None:
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        for use in vmi_images(vmi["spec"]):
            if use.reference in self.faults.missing_images:
                return use.reference, image_not_found(use.reference)

        def progress(image: str, done: int, total: int) -> None:
            self._pull_progress(namespace, name, image, done, total)

        return await self.runtime.pull_images(vmi, progress)

    def _pull_progress(self, namespace: str, name: str, image: str, done: int, total: int) -> None:
        """Pull progress on the VMI while its launcher pod waits for its images. KubeVirt reports none
        (the kubelet's only word is the pod's "Pulling" event): this condition is the local cluster's
        own, read by the app where it exists and absent on a real cluster."""
        vmi = self.store.get(VMI, namespace, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        percent = int(done * 100 / total) if total else 0
        message = f'pulling {percent} % of image "{image}" ({done / 1e6:.1f} of {total / 1e6:.1f} MB)'
        conditions = vmi.get("status", {}).get("conditions", [])
        current = next((c for c in conditions if c.get("type") == "Ready"), None)
        if current is not None and current.get("message") == message:
            return
        pulling = {"type": "Ready", "status": "False", "reason": PULLING_REASON, "message": message}
        pulling |= {"lastProbeTime": None, "lastTransitionTime": now_timestamp()}
        self._set_vmi_status(vmi, conditions=[c for c in conditions if c.get("type") != "Ready"] + [pulling])

    async def _pull_and_start(self, namespace: str, name: str) -> None:
        """The kubelet pulls the containerDisk images (the `-init` containers), then the guest starts.
        A failed pull leaves the pod waiting; virt-controller reports it on the VMI as
        Synchronized=False ErrImagePull / ImagePullBackOff with the kubelet's message
        (lifecycle.go checkForContainerImageError), and the kubelet retries with back-off."""
        backoff, longest = IMAGE_PULL_BACKOFF_SECONDS
        while True:
            vmi = self.store.get(VMI, namespace, name)
            if vmi is None or vmi["metadata"].get("deletionTimestamp"):
                return
            failure = await self._pull_images(vmi)
            if failure is None:
                break
            image, message = failure
            self._set_condition(vmi, "Synchronized", "ErrImagePull", message)
            await asyncio.sleep(IMAGE_PULL_NEXT_SYNC_SECONDS)
            vmi = self.store.get(VMI, namespace, name)
            if vmi is None or vmi["metadata"].get("deletionTimestamp"):
                return
            self._set_condition(vmi, "Synchronized", "ImagePullBackOff", f'Back-off pulling image "{image}"')
            await self._pull_backoff(backoff)
            backoff = min(backoff * 2, longest)
        vmi = self.store.get(VMI, namespace, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        vmi = self._remove_condition(vmi, "Synchronized")
        vmi = self._remove_condition(vmi, "Ready")
        try:
            await self.runtime.start(vmi, self._network(namespace))
        except Exception as exc:  # a runtime failure is the VMI's failure, not the server's
            log.exception("runtime failed to start %s/%s", namespace, name)
            self._on_phase(namespace, name, PhaseUpdate("Failed", reason="RuntimeError", message=str(exc)))

    def _pod_security_violation(self, namespace: str) -> str | None:
        ns = self.store.get(NAMESPACES, "", namespace) or {}
        level = (ns.get("metadata", {}).get("labels") or {}).get(
            POD_SECURITY_ENFORCE_LABEL, self.options.pod_security_default
        )
        if level == "privileged":
            return None
        # An unknown level is enforced as the most restrictive one, as Pod Security admission does.
        level = level if level in LAUNCHER_POD_SECURITY_VIOLATIONS else "restricted"
        return f'violates PodSecurity "{level}:latest": {LAUNCHER_POD_SECURITY_VIOLATIONS[level]}'

    def _pod_quota_refusal(self, namespace: str, containers: list[launcher.Container]) -> str | None:
        in_use = self._pods_in_use(namespace)
        for q in self.store.list(RESOURCE_QUOTAS, namespace):
            hard = q.get("spec", {}).get("hard") or {}
            refusal = quota.check_pod(q["metadata"]["name"], hard, in_use, containers)
            if refusal:
                return refusal
        return None

    def _on_phase(self, namespace: str, name: str, update: PhaseUpdate) -> None:
        """The runtime reports progress; turn it into the status virt-handler would write."""
        vmi = self.store.get(VMI, namespace, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        if update.sync_error:
            # pkg/virt-handler/vm.go: a failed SyncVMI is a SyncFailed event and Synchronized=False;
            # the phase does not change.
            vmi = self._set_vmi_status(vmi, phase=update.phase, nodeName=update.node or NODE_NAME)
            self._set_condition(vmi, "Synchronized", SYNC_FAILED_REASON, update.sync_error)
            self.record_event(vmi, "Warning", "SyncFailed", update.sync_error, component="virt-handler")
            return
        changes: dict[str, Any] = {"phase": update.phase}
        if update.node:
            changes["nodeName"] = update.node
            vmi["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = update.node
        conditions = [c for c in vmi.get("status", {}).get("conditions", []) if c.get("type") != "Ready"]
        if update.phase == "Running":
            changes["interfaces"] = self._status_interfaces(vmi, update)
            conditions.append(
                {
                    "type": "Ready",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_timestamp(),
                }
            )
            changes["guestOSInfo"] = {}
        elif update.phase in ("Failed", "Succeeded"):
            conditions.append(
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": update.reason or "PodTerminating",
                    "message": update.message,
                    "lastProbeTime": None,
                    "lastTransitionTime": now_timestamp(),
                }
            )
            self._launchers.pop((namespace, name), None)
            if update.reason:
                changes["reason"] = update.reason
        changes["conditions"] = conditions
        self._set_vmi_status(vmi, **changes)
        if update.phase in ("Failed", "Succeeded"):
            self._refresh_quotas(namespace)
            self._retry_blocked(namespace)
            self._retry_unschedulable()

    @staticmethod
    def _status_interfaces(vmi: Obj, update: PhaseUpdate) -> list[Obj]:
        """What virt-handler reports for a guest without the guest agent (none of ours has one).

        The domain gives name, MAC, queues and link state; the address is the pod IP from the pod
        interface cache, whatever the binding (`pkg/network/setup/netstat.go`,
        `updateIfacesStatusFromPodCache`); virt-controller adds the pod interface's name
        (`pkg/network/controllers/vmi.go`). The guest's own interface name (`interfaceName`) and
        `guest-agent` in `infoSource` come only from a guest agent.
        """
        spec = vmi["spec"]
        pod_networks = {n["name"] for n in spec.get("networks") or [] if "pod" in n}
        interfaces = []
        for iface in spec["domain"]["devices"].get("interfaces") or []:
            entry: Obj = {
                "name": iface["name"],
                "infoSource": "domain",
                "queueCount": 1,
                "linkState": "up",
            }
            if iface["name"] in pod_networks and update.ip:
                entry.update(
                    ipAddress=update.ip,
                    ipAddresses=[update.ip],
                    mac=iface.get("macAddress", update.mac),
                    podInterfaceName="eth0",
                )
            interfaces.append(entry)
        return interfaces

    # -- pods: the scheduler and the kubelet ----------------------------------------------------------
    def _start_pod(self, namespace: str, name: str) -> None:
        pod = self.store.get(PODS, namespace, name)
        if pod is None:
            return
        pod["status"] = pods.scheduled_status(pod, now_timestamp())
        pod = self.store.replace(PODS, pod)
        self.record_event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {namespace}/{name} to {NODE_NAME}",
            component="default-scheduler",
        )
        self.containers.start(pod, self._network(namespace))

    def _on_pod_report(self, namespace: str, name: str, report: PodReport) -> None:
        pod = self.store.get(PODS, namespace, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        if report.event is not None:
            self.record_event(pod, report.event[0], report.event[1], report.event[2], component="kubelet")
        if report.pod_ip is None and report.container is None:
            return
        was_terminal = pods.is_terminal(pod)
        container = report.container
        pod["status"] = pods.apply_report(
            pod,
            now_timestamp(),
            pod_ip=report.pod_ip,
            container=container.name if container else None,
            state=container.state if container else None,
            last_state=container.last_state if container else None,
            restart_count=container.restart_count if container else 0,
        )
        self.store.replace(PODS, pod)
        self._publish_names(namespace)
        if pods.is_terminal(pod) and not was_terminal:
            self._refresh_quotas(namespace)
            self._retry_blocked(namespace)

    def _delete_pod(self, pod: Obj, grace: Any) -> Obj:
        """Graceful deletion: the pod stays with a deletionTimestamp until the kubelet stopped it."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = now_timestamp()
            seconds = pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else int(grace)
            pod["metadata"]["deletionGracePeriodSeconds"] = seconds
            pod = self.store.replace(PODS, pod)
        if key not in self._pod_terminations:
            self._pod_terminations[key] = self._spawn(self._terminate_pod(*key))
        return pod

    async def _terminate_pod(self, namespace: str, name: str) -> None:
        try:
            await self.containers.stop(namespace, name)
            pod = self.store.get(PODS, namespace, name)
            if pod is not None:
                self.store.remove(PODS, namespace, name)
                self._after_change(PODS, namespace, None, pod)
                self._retry_blocked(namespace)
        finally:
            self._pod_terminations.pop((namespace, name), None)

    def pod_container(self, namespace: str, name: str, container: str | None) -> tuple[Obj, str]:
        """The pod and the container a log or exec request means (the only one when unnamed)."""
        pod = self._require(PODS, namespace, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        if not container:
            if len(names) > 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
                )
            container = names[0]
        if container not in names:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        return pod, container

    # -- events ------------------------------------------------------------------------------------
    def record_event(
        self,
        involved: Obj,
        event_type: str,
        reason: str,
        message: str,
        component: str = "virtualmachine-controller",
    ) -> None:
        meta = involved["metadata"]
        namespace = meta.get("namespace", "default")
        for event in self.store.list(EVENTS, namespace):
            if (
                event["involvedObject"].get("uid") == meta["uid"]
                and event.get("reason") == reason
                and event.get("message") == message
            ):
                event["count"] = event.get("count", 1) + 1
                event["lastTimestamp"] = now_timestamp()
                self.store.replace(EVENTS, event)
                return
        timestamp = now_timestamp()
        self._store_new(
            EVENTS,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
                "involvedObject": {
                    "kind": involved["kind"],
                    "apiVersion": involved["apiVersion"],
                    "namespace": namespace,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "resourceVersion": meta["resourceVersion"],
                },
                "reason": reason,
                "message": message,
                "type": event_type,
                "count": 1,
                "source": {"component": component},
                "firstTimestamp": timestamp,
                "lastTimestamp": timestamp,
                "reportingComponent": component,
                "reportingInstance": "",
            },
        )

    # -- subresources.kubevirt.io ------------------------------------------------------------------
    def _running_vmi(self, namespace: str, name: str, code: int = 400) -> Obj:
        vmi = self._require(VMI, namespace, name)
        if vmi.get("status", {}).get("phase") != "Running":
            raise ApiError(code, "BadRequest" if code == 400 else "Conflict", "VMI is not running")
        return vmi

    @staticmethod
    def is_paused(vmi: Obj) -> bool:
        return any(
            c.get("type") == "Paused" and c.get("status") == "True"
            for c in vmi.get("status", {}).get("conditions", [])
        )

    async def set_paused(
        self, namespace: str, name: str, *, paused: bool, condition_delay: float | None = None
    ) -> None:
        """virt-api's pause/unpause: decided on the Paused condition, done by virt-handler at once.

        pkg/virt-api/rest/lifecycle.go refuses from the condition alone (409 "VMI is already paused" /
        "VMI is not paused"), then virt-handler pauses or resumes the domain before the answer
        (virt-launcher does nothing to a domain already in that state). The condition follows at
        virt-handler's next sync, `condition_delay` seconds later (the option's by default).
        """
        vmi = self._running_vmi(namespace, name, code=409)
        if paused and self.is_paused(vmi):
            raise ApiError(409, "Conflict", "VMI is already paused")
        if not paused and not self.is_paused(vmi):
            raise ApiError(409, "Conflict", "VMI is not paused")
        key = (namespace, name)
        if paused:
            await self.runtime.pause(namespace, name)
            self._paused_domains.add(key)
        else:
            await self.runtime.unpause(namespace, name)
            self._paused_domains.discard(key)
        delay = self.options.pause_condition_delay if condition_delay is None else condition_delay
        self._spawn(self._sync_paused_condition(namespace, name, delay))

    async def _sync_paused_condition(self, namespace: str, name: str, delay: float) -> None:
        """virt-handler's updatePausedConditions after `delay`, from what the domain is by then; and
        the Ready condition, which follows the launcher pod's readiness gate
        `kubevirt.io/virtual-machine-unpaused` (virt-controller's syncPausedConditionToPod, then
        syncReadyConditionFromPod; the kubelet's message). Both are written at once here."""
        await asyncio.sleep(delay)
        vmi = self.store.get(VMI, namespace, name)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        if vmi.get("status", {}).get("phase") != "Running":
            return
        paused = (namespace, name) in self._paused_domains
        if paused == self.is_paused(vmi):
            return
        now = now_timestamp()
        conditions = [
            c for c in vmi["status"].get("conditions", []) if c.get("type") not in ("Paused", "Ready")
        ]
        if paused:
            conditions += [
                {
                    "type": "Paused",
                    "status": "True",
                    "reason": "PausedByUser",
                    "message": "VMI was paused by user",
                    "lastProbeTime": None,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ReadinessGatesNotReady",
                    "message": 'the status of pod readiness gate "kubevirt.io/virtual-machine-unpaused" '
                    'is not "True", but False',
                    "lastProbeTime": None,
                    "lastTransitionTime": now,
                },
            ]
        else:
            conditions.append(
                {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            )
        self._set_vmi_status(vmi, conditions=conditions)

    async def open_stream(
        self, namespace: str, name: str, kind: StreamKind
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self._running_vmi(namespace, name)
        try:
            return await self.runtime.open_stream(namespace, name, kind)
        except StreamUnavailable as exc:
            raise errors.bad_request(str(exc)) from exc

    def check_stream(self, namespace: str, name: str, kind: str) -> None:
        """What virt-api answers before the websocket upgrade (pkg/virt-api/rest/console.go, vnc.go):
        the console of a Failed VMI is a 409 Conflict, any other VMI that is not running a 400."""
        vmi = self._require(VMI, namespace, name)
        if kind == "console" and vmi.get("status", {}).get("phase") == "Failed":
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "{name}": '
                "VMI is in failed status",
                name=name,
                group="kubevirt.io",
                kind="virtualmachineinstance",
            )
        self._running_vmi(namespace, name)

    async def open_port(
        self, namespace: str, name: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """virt-api's portforward dial (pkg/virt-api/rest/portforward.go, dialers.go), before the
        websocket upgrade: 404 without the VMI, 409 "VMI is paused", 400 "no network interfaces are
        present" (e.g. still scheduling), then a TCP dial to status.interfaces[0]'s address whose
        failure is a 500 InternalError "dialing VM: dial tcp ...". Unlike the console, the phase
        itself is not checked."""
        vmi = self._require(VMI, namespace, name)
        if self.is_paused(vmi):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on virtualmachineinstance.kubevirt.io "{name}": '
                "VMI is paused",
                name=name,
                group="kubevirt.io",
                kind="virtualmachineinstance",
            )
        interfaces = vmi.get("status", {}).get("interfaces") or []
        if not interfaces:
            raise errors.bad_request("no network interfaces are present")
        address = interfaces[0].get("ipAddress") or ""
        try:
            return await self.runtime.open_port(namespace, name, address, port)
        except (DialFailed, StreamUnavailable) as exc:
            detail = str(exc) if isinstance(exc, DialFailed) else f"dial tcp {address}:{port}: {exc}"
            message = f"dialing VM: {detail}"
            raise ApiError(
                500,
                "InternalError",
                f"Internal error occurred: {message}",
                causes=[errors.Cause(reason="", message=message)],
            ) from exc
        except NotSupported as exc:
            raise errors.bad_request(str(exc)) from exc

    async def fail_vmi(self, namespace: str, name: str, message: str) -> None:
        """The guest dies (a control-API fault): virt-handler reports the VMI Failed."""
        self._running_vmi(namespace, name)
        await self.runtime.stop(namespace, name)
        self._on_phase(namespace, name, PhaseUpdate("Failed", reason="GuestCrashed", message=message))

    async def screenshot(self, namespace: str, name: str) -> bytes:
        self._running_vmi(namespace, name)
        try:
            return await self.runtime.screenshot(namespace, name)
        except (StreamUnavailable, NotSupported) as exc:
            raise errors.bad_request(str(exc)) from exc

    # -- life of the server ------------------------------------------------------------------------
    async def shutdown(self) -> None:
        await self.containers.shutdown()
        await self.runtime.shutdown()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
