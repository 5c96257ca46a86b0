"""Assemble and run the server: TLS files, identities, RBAC policy, cluster, kubeconfig, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from localcluster import kubeconfig, tls
from localcluster.admission import AdmissionPolicies, PolicyError
from localcluster.cluster import Cluster, ClusterOptions
from localcluster.faults import Faults
from localcluster.launcher import KubeVirtConfig
from localcluster.rbac import Authorizer, default_identities
from localcluster.resources import RESOURCE_TYPES
from localcluster.server import ApiServer
from localcluster.validation import Schemas

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RBAC = REPO_ROOT / "deploy" / "k8s" / "rbac.yaml"
# The ValidatingAdmissionPolicies a deployment applies; evaluated on every write, as admission does.
DEFAULT_ADMISSION_POLICIES = REPO_ROOT / "deploy" / "k8s" / "admission-policy.yaml"
# KubeVirt's OpenAPI document, vendored with its licence (localcluster/schemas/README.md).
DEFAULT_SCHEMAS = Path(__file__).resolve().parent / "schemas"


@dataclass
class ServerConfig:
    state_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    runtime: str = "none"
    images: Path | None = None
    pull_cache: Path | None = None
    pull_cache_bytes: int = 20 << 30
    pull_timeout: float = 600.0
    insecure_registries: tuple[str, ...] = ()
    container_images: Path | None = None
    rbac: Path = DEFAULT_RBAC
    admission_policies: Path = DEFAULT_ADMISSION_POLICIES
    schemas: Path = DEFAULT_SCHEMAS
    phase_delay: float = 0.02
    finalize_delay: float = 0.05
    kubevirt: KubeVirtConfig = field(default_factory=KubeVirtConfig)
    image_list: Path | None = None
    pause_condition_delay: float = 0.1
    watch_history: int = 10000
    pod_security_default: str = "privileged"
    rbac_propagation_delay: float = 0.0


def _namespaces_in_manifest(path: Path) -> tuple[str, ...]:
    """Namespaces the RBAC manifest puts things in (the app's own), created as a deployment would."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    names = [d["metadata"]["name"] for d in docs if d.get("kind") == "Namespace"]
    names += [
        d["metadata"]["namespace"]
        for d in docs
        if d.get("kind") in ("ServiceAccount", "Role", "RoleBinding")
        and d.get("metadata", {}).get("namespace")
    ]
    return tuple(dict.fromkeys(names))


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    if not (config.schemas / "kubevirt-v1-swagger.json").is_file():
        raise SystemExit(f"localcluster: no kubevirt-v1-swagger.json in {config.schemas} (use --schemas DIR)")
    if not config.rbac.is_file():
        raise SystemExit(f"localcluster: RBAC manifest {config.rbac} not found (use --rbac FILE)")
    if not config.admission_policies.is_file():
        raise SystemExit(
            f"localcluster: admission policies {config.admission_policies} not found "
            "(use --admission-policies FILE)"
        )
    config.state_dir.mkdir(parents=True, exist_ok=True)
    tls_files = tls.generate(config.state_dir, config.host)
    identities = default_identities()
    authorizer = Authorizer.from_file(config.rbac)
    try:
        # Their CEL is compiled once the server listens (below): it takes longer than everything else.
        policies = AdmissionPolicies.from_file(config.admission_policies, compile_now=False)
    except PolicyError as error:
        raise SystemExit(f"localcluster: {config.admission_policies}: {error}") from error
    schemas = Schemas(config.schemas)
    faults = Faults()
    runtime_options: dict[str, Any] = {"phase_delay": config.phase_delay}
    if config.images is not None:
        runtime_options["images"] = config.images
    if config.runtime == "qemu":
        runtime_options["pull_cache"] = config.pull_cache or config.state_dir / "pulls"
        runtime_options["pull_cache_bytes"] = config.pull_cache_bytes
        runtime_options["pull_timeout"] = config.pull_timeout
        runtime_options["insecure_registries"] = config.insecure_registries
    if config.image_list is not None:
        runtime_options["image_list"] = config.image_list
    cluster = Cluster(
        schemas,
        ClusterOptions(
            runtime=config.runtime,
            runtime_options=runtime_options,
            finalize_delay=config.finalize_delay,
            kubevirt=config.kubevirt,
            pause_condition_delay=config.pause_condition_delay,
            watch_history=config.watch_history,
            extra_namespaces=_namespaces_in_manifest(config.rbac),
            pod_security_default=config.pod_security_default,
            rbac_propagation_delay=config.rbac_propagation_delay,
            state_dir=config.state_dir,
            container_images=config.container_images,
            insecure_registries=tuple(config.insecure_registries),
            pull_timeout=config.pull_timeout,
        ),
        faults,
        authorizer=authorizer,
        policies=policies,
    )
    # RoleBindings created through the API grant (and stop granting) at once.
    authorizer.role_bindings_in = cluster.role_bindings_in
    api = ApiServer(cluster, authorizer, identities, faults)

    ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ssl_context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    runner = web.AppRunner(api.make_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    api.server_address = f"{config.host}:{port}"
    url = f"https://{config.host}:{port}"
    kubeconfig_path = config.state_dir / "kubeconfig"
    kubeconfig.write(kubeconfig_path, url, tls_files.ca_cert.read_bytes(), identities)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"localcluster listening on {url} kubeconfig={kubeconfig_path}", flush=True)
    if ready is not None:
        ready.set()
    # Compile the schemas and the policies' CEL off the event loop now, so the first create does
    # not pay for it (a write that comes sooner waits for the policies). CEL that does not compile
    # stops the server, as a policy it cannot evaluate must never be skipped.
    warm_up = loop.run_in_executor(None, schemas.warm_up, RESOURCE_TYPES)
    compiled = loop.run_in_executor(None, policies.compile)
    compiled.add_done_callback(lambda future: future.cancelled() or future.exception() is None or stop.set())
    try:
        await stop.wait()
    finally:
        log.info("localcluster shutting down")
        await cluster.shutdown()
        await runner.cleanup()
        warm_up.cancel()
        sys.stdout.flush()
    if compiled.done() and not compiled.cancelled() and compiled.exception() is not None:
        raise SystemExit(f"localcluster: {config.admission_policies}: {compiled.exception()}")
