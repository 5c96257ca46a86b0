"""The one module that calls the Kubernetes API.

Every call has a timeout (settings.KUBE_REQUEST_TIMEOUT); 409 AlreadyExists on create and 404 on
delete count as success; every failure leaves as one of the `labs.exceptions.Cluster*` errors with
a readable message. Objects come from `labs.manifests` as plain dicts. Nothing here touches the
database, so the thread pool that creates objects concurrently never needs a DB connection.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import urllib3
from django.conf import settings
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from labs.exceptions import (
    ClusterConflict,
    ClusterError,
    ClusterExpired,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnavailable,
    NamespaceTerminating,
    QuotaExceeded,
)

KUBEVIRT_GROUP = "kubevirt.io"
KUBEVIRT_VERSION = "v1"
VMI_PLURAL = "virtualmachineinstances"
_SUBRESOURCE_PATH = (
    "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/{action}"
)
# Enough parallel requests for the largest lab (LabMachine count is small; 20 is the per-user cap).
_MAX_PARALLEL_CALLS = 16

T = TypeVar("T")

logger = logging.getLogger(__name__)

_client_lock = threading.Lock()
_client: client.ApiClient | None = None
_executor = ThreadPoolExecutor(max_workers=_MAX_PARALLEL_CALLS, thread_name_prefix="cluster")


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: dict[str, str]
    phase: str  # "Active" or "Terminating"


# --- Client -------------------------------------------------------------------------------------------


def _build_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        if settings.KUBE_IN_CLUSTER:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=settings.KUBECONFIG or None,
                context=settings.KUBE_CONTEXT or None,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError) as error:
        raise ClusterUnavailable(f"The cluster connection is misconfigured: {error}") from error
    # Retry only connection failures: the request never reached the server, so even a POST is safe,
    # and a read timeout is not multiplied by urllib3's default three retries.
    configuration.retries = urllib3.util.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0)
    configuration.connection_pool_maxsize = _MAX_PARALLEL_CALLS
    return client.ApiClient(configuration)


def api_client() -> client.ApiClient:
    """The shared client, built from settings on first use."""
    global _client
    with _client_lock:
        if _client is None:
            _client = _build_client()
        return _client


def reset_client() -> None:
    """Forget the cached client, e.g. after tests change KUBECONFIG."""
    global _client
    with _client_lock:
        old, _client = _client, None
    if old is not None:
        old.close()


def _timeout() -> float:
    return settings.KUBE_REQUEST_TIMEOUT


# --- Errors -------------------------------------------------------------------------------------------


def _status_body(error: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _translate(action: str, error: ApiException) -> ClusterError:
    status = error.status or 0
    body = _status_body(error)
    detail = body.get("message") or error.reason or "no details"
    message = f"Could not {action}: {detail} (HTTP {status})"
    causes = [c.get("reason") for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
    if status == 0 or status == 429 or status >= 500:
        return ClusterUnavailable(
            f"Could not {action}: the cluster is unavailable ({detail}).", status=status
        )
    if status == 401:
        return ClusterUnavailable(f"Could not {action}: the cluster rejected our credentials.", status=401)
    if status == 403:
        if "NamespaceTerminating" in causes:
            return NamespaceTerminating(message, status=403)
        if "exceeded quota" in detail:
            return QuotaExceeded(message, status=403)
        return ClusterForbidden(
            f"Could not {action}: the application is not allowed to ({detail}). "
            "Check deploy/k8s/rbac.yaml and admission-policy.yaml.",
            status=403,
        )
    if status == 404:
        return ClusterNotFound(message, status=404)
    if status == 410:
        return ClusterExpired(message, status=410)
    if status == 409:
        return ClusterConflict(message, status=409, reason=body.get("reason") or "")
    if status in (400, 422):
        return ClusterInvalid(message, status=status)
    return ClusterError(message, status=status)


def _call(
    action: str,
    function: Callable[..., T],
    *args: Any,
    timeout: float | tuple[float, float] | None = None,
    **kwargs: Any,
) -> T:
    """Run one API call with the timeout, translating every failure into a ClusterError."""
    try:
        return function(*args, _request_timeout=timeout or _timeout(), **kwargs)
    except ApiException as error:
        raise _translate(action, error) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ClusterUnavailable(f"Could not {action}: the cluster is unreachable ({error}).") from error


def _run_concurrently(calls: list[Callable[[], None]]) -> None:
    """Run the calls in parallel and wait for all of them; then raise the first failure, if any.

    Waiting for every call before raising means a rollback never races a create still in flight.
    """
    futures = [_executor.submit(call) for call in calls]
    errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error


def check_api_server(*, timeout: float) -> None:
    """Raise a ClusterError unless the API server answers GET /version with our credentials.

    The readiness probe's question; it uses the same connection as every other call.
    """
    _call("reach the API server", client.VersionApi(api_client()).get_code, timeout=timeout)


# Our manifests must never carry a field the server does not know: by default an API server drops
# unknown fields silently (a misspelt cloud-init reference would leave a VM without its password),
# so every create asks it to refuse them instead.
FIELD_VALIDATION = "Strict"


# --- Namespaces ---------------------------------------------------------------------------------------


# Namespace creates of this process still waiting for the API server's answer, by name.
_creates_lock = threading.Lock()
_creates_in_flight: dict[str, Future[bool]] = {}


def _send_create_namespace(manifest: dict[str, Any]) -> bool:
    name = manifest["metadata"]["name"]
    try:
        _call(
            f"create namespace {name}",
            client.CoreV1Api(api_client()).create_namespace,
            body=manifest,
            field_validation=FIELD_VALIDATION,
            timeout=(_timeout(), settings.KUBE_CREATE_FOLLOW_SECONDS),
        )
    except ClusterConflict as error:
        if error.reason == "AlreadyExists":
            return False
        raise
    return True


def _in_own_thread(function: Callable[[], T], name: str) -> Future[T]:
    """Run `function` in a daemon thread: unlike a pool's, it never delays the process's exit."""
    future: Future[T] = Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(function())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _forget_create(name: str, future: Future[bool]) -> None:
    with _creates_lock:
        if _creates_in_flight.get(name) is future:
            del _creates_in_flight[name]


def create_namespace(manifest: dict[str, Any]) -> bool:
    """Create the namespace; False if it already existed (the caller checks whose it is).

    Raises ClusterUnavailable when the API server has not answered within KUBE_REQUEST_TIMEOUT. The
    request itself is kept open for KUBE_CREATE_FOLLOW_SECONDS: an API server may still create the
    namespace after the client gave up (its storage call outlives the request), and a delete asked
    for meanwhile is then repeated (see `delete_namespace`).
    """
    name = manifest["metadata"]["name"]
    future = _in_own_thread(lambda: _send_create_namespace(manifest), name=f"create-namespace-{name}")
    with _creates_lock:
        _creates_in_flight[name] = future
    future.add_done_callback(lambda done: _forget_create(name, done))
    try:
        return future.result(timeout=_timeout())
    except FutureTimeout:
        raise ClusterUnavailable(
            f"Could not create namespace {name}: the cluster did not answer within {_timeout():g} seconds."
        ) from None


def _delete_if_created_late(name: str, create: Future[bool]) -> None:
    if create.cancelled() or create.exception() is not None or create.result() is not True:
        return  # not created by this request: nothing of ours to delete
    logger.warning("Namespace %s was created after its start gave up on it; deleting it again.", name)
    try:
        delete_namespace(name)
    except ClusterError as error:  # the namespace has no active instance: reconcile deletes it
        logger.warning("Deleting namespace %s again failed: %s", name, error.message)


def read_namespace(name: str) -> NamespaceInfo | None:
    """The namespace, or None once it is gone (the only proof that a stop is complete)."""
    try:
        namespace = _call(f"read namespace {name}", client.CoreV1Api(api_client()).read_namespace, name=name)
    except ClusterNotFound:
        return None
    return _namespace_info(namespace)


def delete_namespace(name: str) -> None:
    """Ask for the namespace and everything in it to be deleted; already gone or going is fine.

    One DELETE starts the termination; the caller then polls `read_namespace` until it is None.
    A DELETE of a namespace already Terminating answers the namespace (200) on Kubernetes 1.17 and
    later, 409 Conflict before (pkg/registry/core/namespace/storage/storage.go, kubernetes#84122);
    both mean "already going". No preconditions are sent, so a 409 has no other meaning here.

    If a create of it by this process is still waiting for its answer (see `create_namespace`), the
    namespace is deleted again as soon as that create turns out to have made it.
    """
    with _creates_lock:
        create = _creates_in_flight.get(name)
    if create is not None:
        create.add_done_callback(lambda done: _delete_if_created_late(name, done))
    with contextlib.suppress(ClusterNotFound, ClusterConflict):
        _call(f"delete namespace {name}", client.CoreV1Api(api_client()).delete_namespace, name=name)


def list_namespaces(*, label_selector: str) -> list[NamespaceInfo]:
    """The namespaces the selector picks (labs.manifests makes the selectors)."""
    result = _call(
        "list lab namespaces",
        client.CoreV1Api(api_client()).list_namespace,
        label_selector=label_selector,
    )
    return [_namespace_info(item) for item in result.items]


def _namespace_info(namespace: Any) -> NamespaceInfo:
    return NamespaceInfo(
        name=namespace.metadata.name,
        labels=dict(namespace.metadata.labels or {}),
        phase=(namespace.status.phase if namespace.status else None) or "Active",
    )


# --- Objects inside an instance's namespace -------------------------------------------------------------


def _create_call(manifest: dict[str, Any]) -> Callable[[], None]:
    """A call creating one namespaced object; AlreadyExists counts as success (retries are safe)."""
    namespace, name, kind = manifest["metadata"]["namespace"], manifest["metadata"]["name"], manifest["kind"]
    api = api_client()
    creators: dict[str, Callable[[], Any]] = {
        "NetworkPolicy": lambda: client.NetworkingV1Api(api).create_namespaced_network_policy,
        "ResourceQuota": lambda: client.CoreV1Api(api).create_namespaced_resource_quota,
        "Secret": lambda: client.CoreV1Api(api).create_namespaced_secret,
        "RoleBinding": lambda: client.RbacAuthorizationV1Api(api).create_namespaced_role_binding,
        "Service": lambda: client.CoreV1Api(api).create_namespaced_service,
        "Pod": lambda: client.CoreV1Api(api).create_namespaced_pod,
    }

    def create() -> None:
        action = f"create {kind} {name} in {namespace}"
        try:
            if kind == "VirtualMachineInstance":
                _call(
                    action,
                    client.CustomObjectsApi(api).create_namespaced_custom_object,
                    group=KUBEVIRT_GROUP,
                    version=KUBEVIRT_VERSION,
                    namespace=namespace,
                    plural=VMI_PLURAL,
                    body=manifest,
                    field_validation=FIELD_VALIDATION,
                )
            else:
                create_typed = creators[kind]()
                _call(
                    action,
                    create_typed,
                    namespace=namespace,
                    body=manifest,
                    field_validation=FIELD_VALIDATION,
                )
        except ClusterConflict as error:
            if error.reason != "AlreadyExists":
                raise

    return create


def create_objects(manifests: list[dict[str, Any]]) -> None:
    """Create namespaced objects in parallel: one round trip's latency whatever their number."""
    _run_concurrently([_create_call(manifest) for manifest in manifests])


def list_pods(*, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """All Pods of an instance (its container machines) in one call, as plain API dicts."""
    api = api_client()
    result = _call(
        f"list containers in {namespace}",
        client.CoreV1Api(api).list_namespaced_pod,
        namespace=namespace,
        label_selector=label_selector,
    )
    return list(api.sanitize_for_serialization(result).get("items") or [])


def list_vmis(*, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """All VMIs of an instance in one call."""
    result = _call(
        f"list virtual machines in {namespace}",
        client.CustomObjectsApi(api_client()).list_namespaced_custom_object,
        group=KUBEVIRT_GROUP,
        version=KUBEVIRT_VERSION,
        namespace=namespace,
        plural=VMI_PLURAL,
        label_selector=label_selector,
    )
    return list(result.get("items") or [])


def _put_subresource(*, namespace: str, name: str, action: str) -> None:
    api = api_client()
    method, url, headers, body, post_params = api.param_serialize(
        method="PUT",
        resource_path=_SUBRESOURCE_PATH,
        path_params={"namespace": namespace, "name": name, "action": action},
        header_params={"Accept": "application/json", "Content-Type": "application/json"},
        body={},
        auth_settings=["BearerToken"],
    )

    def put(_request_timeout: float) -> None:
        response = api.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post_params,
            _request_timeout=_request_timeout,
        )
        response.read()
        api.response_deserialize(response, {"2XX": None})  # raises ApiException unless 2xx

    _call(f"{action} virtual machine {name} in {namespace}", put)


def set_vmis_paused(*, namespace: str, names: list[str], paused: bool) -> None:
    """Pause or unpause the VMIs in parallel; one already in the wanted state is left as it is."""
    action = "pause" if paused else "unpause"
    # KubeVirt's 409 when the VMI is already in the wanted state; other 409s are real conflicts.
    already = "already paused" if paused else "not paused"

    def call_for(name: str) -> Callable[[], None]:
        def call() -> None:
            try:
                _put_subresource(namespace=namespace, name=name, action=action)
            except ClusterConflict as error:
                if already not in error.message:
                    raise

        return call

    _run_concurrently([call_for(name) for name in names])


MERGE_PATCH = "application/merge-patch+json"


def set_labels(
    *, namespace: str, vmi_names: list[str], labels: dict[str, str], pod_names: list[str] = ()
) -> None:
    """Set labels on the namespace, its VMIs and its container machines' Pods in parallel (a ready
    instance handed to a student).

    JSON merge patches (RFC 7386): custom resources such as VMIs refuse strategic merge patches
    (apiextensions-apiserver's customresource_handler.go), so the content type is given explicitly.
    """
    api = api_client()
    body = {"metadata": {"labels": labels}}

    def namespace_call() -> None:
        _call(
            f"label namespace {namespace}",
            client.CoreV1Api(api).patch_namespace,
            name=namespace,
            body=body,
            _content_type=MERGE_PATCH,
        )

    def vmi_call(name: str) -> Callable[[], None]:
        def call() -> None:
            _call(
                f"label virtual machine {name} in {namespace}",
                client.CustomObjectsApi(api).patch_namespaced_custom_object,
                group=KUBEVIRT_GROUP,
                version=KUBEVIRT_VERSION,
                namespace=namespace,
                plural=VMI_PLURAL,
                name=name,
                body=body,
                _content_type=MERGE_PATCH,
            )

        return call

    def pod_call(name: str) -> Callable[[], None]:
        def call() -> None:
            _call(
                f"label container {name} in {namespace}",
                client.CoreV1Api(api).patch_namespaced_pod,
                name=name,
                namespace=namespace,
                body=body,
                _content_type=MERGE_PATCH,
            )

        return call

    _run_concurrently(
        [namespace_call, *(vmi_call(name) for name in vmi_names), *(pod_call(name) for name in pod_names)]
    )


# --- Websockets: consoles (vncproxy/upstream.py) and port-forwards (labs/machine_exec.py) ------------


@dataclass(frozen=True)
class WebsocketTarget:
    """Where and how to open a VMI's `vnc`/`console` websocket: the same server, TLS material and
    credentials as every other call here, so the proxy needs no second secret and no kubectl proxy."""

    url: str
    ssl: ssl.SSLContext | None  # None for a plain-http API server (never in production)
    headers: dict[str, str]
    server_hostname: str | None  # SNI / hostname to verify, when the kubeconfig overrides it


_ws_ssl_lock = threading.Lock()
# Built once per client: loading the CA bundle and client key costs milliseconds, once is enough.
_ws_ssl_cache: tuple[client.ApiClient, ssl.SSLContext] | None = None


def _websocket_ssl_context(api: client.ApiClient) -> ssl.SSLContext:
    global _ws_ssl_cache
    with _ws_ssl_lock:
        if _ws_ssl_cache is not None and _ws_ssl_cache[0] is api:
            return _ws_ssl_cache[1]
        configuration = api.configuration
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif configuration.assert_hostname is False:
            context.check_hostname = False
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
        _ws_ssl_cache = (api, context)
        return context


def subresource_websocket_target(*, namespace: str, name: str, kind: str) -> WebsocketTarget:
    """The upstream of a console proxy stream; `kind` is "vnc" or "console".

    Raises ClusterUnavailable when the connection is misconfigured (like every other call here).
    """
    if kind not in ("vnc", "console"):
        raise ValueError(f"not a streaming subresource: {kind!r}")
    return _websocket_target(_SUBRESOURCE_PATH.format(namespace=namespace, name=name, action=kind))


def portforward_websocket_target(*, namespace: str, name: str, port: int) -> WebsocketTarget:
    """KubeVirt's `portforward` to a TCP port of the VMI (as `virtctl ssh` and `port-forward` use it):
    a websocket whose binary frames carry the TCP stream. Step checks reach the guest's SSH server
    through it (labs/machine_exec.py). RBAC: `get` on `virtualmachineinstances/portforward`."""
    action = f"portforward/{int(port)}/tcp"
    return _websocket_target(_SUBRESOURCE_PATH.format(namespace=namespace, name=name, action=action))


def pod_exec_websocket_target(
    *, namespace: str, name: str, container: str, command: list[str], stdin: bool = True, tty: bool = True
) -> WebsocketTarget:
    """`pods/exec` in a container machine: with a terminal (stdin, stdout, TTY) for the console
    proxy's shell, or stdin, stdout and stderr apart for step checks (labs/machine_exec.py).
    RBAC: `create` (and `get`) on `pods/exec`."""
    flag = {True: "true", False: "false"}
    streams = [("stdin", flag[stdin]), ("stdout", "true"), ("stderr", flag[not tty]), ("tty", flag[tty])]
    query = urlencode([("container", container), *(("command", part) for part in command), *streams])
    return _websocket_target(f"/api/v1/namespaces/{namespace}/pods/{name}/exec?{query}")


def _websocket_target(path: str) -> WebsocketTarget:
    api = api_client()
    configuration = api.configuration
    base = configuration.host.rstrip("/")
    scheme, _, rest = base.partition("://")
    url = ("wss://" if scheme == "https" else "ws://") + rest + path
    try:
        context = _websocket_ssl_context(api) if scheme == "https" else None
        # auth_settings() refreshes an expiring in-cluster token through the client's own hook.
        auth = configuration.auth_settings().get("BearerToken")
    except (OSError, ValueError, ssl.SSLError) as error:
        raise ClusterUnavailable(f"The cluster connection is misconfigured: {error}") from error
    headers = {"Authorization": auth["value"]} if auth and auth.get("value") else {}
    return WebsocketTarget(
        url=url, ssl=context, headers=headers, server_hostname=configuration.tls_server_name or None
    )


# --- Watches (labs/watcher.py) ---------------------------------------------------------------------
#
# The kinds the watcher follows across all namespaces, by plural: one list-and-watch each. Adding a
# kind (Pods for container labs) is one entry here and one in labs.watcher.WATCHED_KINDS.
WATCHABLE_LISTS: dict[str, Callable[[client.ApiClient], Callable[..., Any]]] = {
    "namespaces": lambda api: client.CoreV1Api(api).list_namespace,
    VMI_PLURAL: lambda api: functools.partial(
        client.CustomObjectsApi(api).list_cluster_custom_object, KUBEVIRT_GROUP, KUBEVIRT_VERSION, VMI_PLURAL
    ),
    # Container machines' Pods (KubeVirt's launcher pods carry their VMI's labels too; the watcher
    # keeps only Pods named like a container machine).
    "pods": lambda api: client.CoreV1Api(api).list_pod_for_all_namespaces,
}


def list_for_watch(kind: str, *, label_selector: str) -> tuple[list[dict[str, Any]], str]:
    """Every object of the kind the selector picks, as plain dicts, and the list's resourceVersion
    (where the watch that follows starts)."""
    lister = WATCHABLE_LISTS[kind](api_client())
    response = _call(f"list {kind}", lister, label_selector=label_selector, _preload_content=False)
    try:
        body = json.loads(response.data)
    except ValueError as error:
        raise ClusterUnavailable(f"Could not list {kind}: the answer is not JSON ({error}).") from error
    return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")


class KindWatch:
    """One watch request at a time on a kind, with the official client's `Watch`; `stop()` from another
    thread ends the current one. Events are (type, object as a dict): ADDED, MODIFIED, DELETED,
    BOOKMARK. A 410 leaves as ClusterExpired, other failures as the usual Cluster* errors."""

    def __init__(self, kind: str, *, label_selector: str) -> None:
        self.kind = kind
        self.label_selector = label_selector
        self._watch = watch.Watch()

    def events(self, *, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
        lister = WATCHABLE_LISTS[self.kind](api_client())
        # The server ends the watch at timeout_seconds; reading waits a little longer than that.
        request_timeout = (_timeout(), timeout_seconds + _timeout())
        try:
            for event in self._watch.stream(
                lister,
                label_selector=self.label_selector,
                resource_version=resource_version,
                timeout_seconds=timeout_seconds,
                allow_watch_bookmarks=True,
                _request_timeout=request_timeout,
            ):
                yield event["type"], event["raw_object"]
        except ApiException as error:
            raise _translate(f"watch {self.kind}", error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterUnavailable(
                f"Could not watch {self.kind}: the cluster is unreachable ({error})."
            ) from error

    def stop(self) -> None:
        self._watch.stop()
