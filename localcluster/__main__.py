"""`python -m localcluster --port P --state-dir D [--runtime none|qemu] ...`"""

from __future__ import annotations

import gc

# Start-up time is mostly imports (aiohttp, cryptography, yaml, ...). They allocate a few hundred
# thousand long-lived objects, which set off dozens of garbage collections, full ones included, that
# find nothing to free. Collect nothing until the modules are loaded; main() freezes what the imports
# made (it lives as long as the process) and turns the collector back on.
gc.disable()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from localcluster.app import (  # noqa: E402
    DEFAULT_ADMISSION_POLICIES,
    DEFAULT_RBAC,
    DEFAULT_SCHEMAS,
    ServerConfig,
    serve,
)
from localcluster.launcher import KubeVirtConfig  # noqa: E402
from localcluster.runtimes import RUNTIMES  # noqa: E402


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="A single-machine Kubernetes + KubeVirt API server for Lab "
        "Orchestrator's tests and first runs.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="where ca.crt, server.crt/key and kubeconfig are written",
    )
    parser.add_argument(
        "--runtime",
        default="none",
        choices=sorted(RUNTIMES),
        help="what runs VMIs: none (timers, fake console/VNC) or qemu (follow-up issue)",
    )
    parser.add_argument("--images", type=Path, help="directory of VM images (qemu runtime)")
    parser.add_argument(
        "--pull-cache",
        type=Path,
        help="qemu runtime: where pulled images are kept, by digest (default STATE_DIR/pulls)",
    )
    parser.add_argument(
        "--pull-cache-size-mb",
        type=int,
        default=20 * 1024,
        help="qemu runtime: past this size the least recently used images not in use are evicted "
        "(default 20480)",
    )
    parser.add_argument(
        "--pull-timeout-seconds",
        type=float,
        default=600.0,
        help="qemu runtime: a pull that takes longer fails (ErrImagePull) and is retried with back-off",
    )
    parser.add_argument(
        "--insecure-registry",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="qemu runtime: a registry reached over plain HTTP (loopback ones always may be); repeatable",
    )
    parser.add_argument(
        "--container-images",
        type=Path,
        help="directory of OCI image layouts pods' images resolve to (DIR/<name>, tags as references' tags)",
    )
    parser.add_argument(
        "--rbac", type=Path, default=DEFAULT_RBAC, help=f"RBAC manifest (default {DEFAULT_RBAC})"
    )
    parser.add_argument(
        "--admission-policies",
        type=Path,
        default=DEFAULT_ADMISSION_POLICIES,
        help=f"ValidatingAdmissionPolicy manifest (default {DEFAULT_ADMISSION_POLICIES})",
    )
    parser.add_argument(
        "--schemas",
        type=Path,
        default=DEFAULT_SCHEMAS,
        help=f"directory holding kubevirt-v1-swagger.json (default {DEFAULT_SCHEMAS})",
    )
    parser.add_argument(
        "--phase-delay-ms",
        type=float,
        default=20.0,
        help="none runtime: time between VMI phases (default 20)",
    )
    parser.add_argument(
        "--finalize-delay-ms",
        type=float,
        default=50.0,
        help="time a deleted namespace stays Terminating before it is emptied (default 50)",
    )
    parser.add_argument(
        "--kubevirt-config",
        type=Path,
        help="YAML or JSON of a KubeVirt CR's spec.configuration (cpuAllocationRatio, "
        "additionalGuestMemoryOverheadRatio, supportContainerResources, ...): how launcher pods are sized",
    )
    parser.add_argument(
        "--image-list",
        type=Path,
        help="none runtime: the images that exist, one reference per line; others fail to pull",
    )
    parser.add_argument(
        "--pause-condition-delay-ms",
        type=float,
        default=100.0,
        help="time between a pause/unpause answer and the VMI's Paused condition following it, as "
        "virt-handler writes it at its next sync (default 100)",
    )
    parser.add_argument(
        "--watch-history",
        type=int,
        default=10000,
        help="watch events kept for resuming; older resourceVersions answer 410 Gone (default 10000)",
    )
    parser.add_argument(
        "--pod-security-default",
        default="privileged",
        choices=("privileged", "baseline", "restricted"),
        help="Pod Security level enforced in namespaces without the pod-security.kubernetes.io/enforce "
        "label; below privileged, VMIs' launcher pods are refused (default privileged, as Kubernetes')",
    )
    parser.add_argument(
        "--rbac-propagation-ms",
        type=float,
        default=0.0,
        help="time before a new RoleBinding grants anything, as a real API server's RBAC cache lags "
        "behind a create (default 0)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    kubevirt = KubeVirtConfig()
    if args.kubevirt_config is not None:
        import yaml  # only this option needs it

        try:
            configuration = yaml.safe_load(args.kubevirt_config.read_text()) or {}
            kubevirt = KubeVirtConfig.from_configuration(configuration)
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            parser.error(f"--kubevirt-config {args.kubevirt_config}: {exc}")
    logging.basicConfig(
        level=args.log_level.upper(), format="localcluster %(levelname)s %(name)s: %(message)s"
    )
    return ServerConfig(
        state_dir=args.state_dir.resolve(),
        port=args.port,
        host=args.host,
        runtime=args.runtime,
        images=args.images,
        pull_cache=args.pull_cache,
        pull_cache_bytes=args.pull_cache_size_mb << 20,
        pull_timeout=args.pull_timeout_seconds,
        insecure_registries=tuple(args.insecure_registry),
        container_images=args.container_images,
        rbac=args.rbac,
        admission_policies=args.admission_policies,
        schemas=args.schemas,
        phase_delay=args.phase_delay_ms / 1000,
        finalize_delay=args.finalize_delay_ms / 1000,
        kubevirt=kubevirt,
        image_list=args.image_list,
        pause_condition_delay=args.pause_condition_delay_ms / 1000,
        watch_history=args.watch_history,
        pod_security_default=args.pod_security_default,
        rbac_propagation_delay=args.rbac_propagation_ms / 1000,
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed, else asyncio's (also with EVENT_LOOP=asyncio).

    Every console and VNC byte passes through this process, over TLS on the API server's side and a
    socket on the runtime's; uvloop's compiled transports and TLS cost less CPU than asyncio's."""
    if os.environ.get("EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    # The imports are done: move their objects out of the collector's way (gc.freeze: later
    # collections skip them) instead of having the first collections walk them all, then collect
    # as usual from here on.
    gc.freeze()
    gc.enable()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["build-image"]:  # `python -m localcluster build-image --output DIR`: the qemu demo image
        from localcluster.demoimage import main as build_image  # only this subcommand needs it

        raise SystemExit(build_image(argv[1:]))
    if argv[:1] == ["build-desktop-image"]:  # the desktop demo image (Xorg, Fluxbox, xterm, Dillo)
        from localcluster.desktopimage import main as build_desktop_image

        raise SystemExit(build_desktop_image(argv[1:]))
    if argv[:1] == ["build-debian-image"]:  # the Debian cloud-style disk image (localcluster/cloudimage.py)
        from localcluster.cloudimage import main as build_debian_image

        raise SystemExit(build_debian_image(argv[1:]))
    if argv[:1] == ["demo-images"]:  # push the built demo images to a registry as containerDisks
        from localcluster.registry.demo import main as demo_images

        raise SystemExit(demo_images(argv[1:]))
    if argv[:1] == ["containerdisk"]:  # build a containerDisk image, push it or write a layout/archive
        from localcluster.registry.cli import main as containerdisk

        raise SystemExit(containerdisk(argv[1:]))
    if argv[:1] == ["build-tools-image"]:  # the busybox tools container image (OCI layout)
        from localcluster.containers.toolsimage import main as build_tools_image

        raise SystemExit(build_tools_image(argv[1:]))
    config = parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve(config))
    except NotImplementedError as exc:
        raise SystemExit(f"localcluster: {exc}") from exc


if __name__ == "__main__":
    main()
