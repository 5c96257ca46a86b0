"""`make run`: the app, an embedded local cluster and the demo lab on one machine.

Starts `localcluster` (runtime `qemu` when QEMU and the demo image can be had, `none` otherwise),
points the app at its kubeconfig, migrates, creates the first administrator and the demo content,
then runs the app server (laborchestrator/serve.py) plus the housekeeping loops (`expire`,
`reconcile`) until Ctrl-C, and stops everything it started. Set KUBECONFIG to use a real cluster
instead of the embedded one.

The embedded cluster keeps its objects in memory: its labs end with it. So on Ctrl-C the app stops
first, then its running labs are stopped and recorded as such, with the reason, while the cluster
still answers; then the cluster stops. The children run in sessions of their own, so the
terminal's Ctrl-C reaches only this process, which stops them in that order (and they die with it
if it is killed). After a crash the same happens at the next start, before anything else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from localcluster.harness import die_with_parent, start_local_cluster
from localcluster.qemu.host import ToolsMissing, find_tools
from localcluster.registry.server import RegistryError, run_registry

REPO = Path(__file__).resolve().parent.parent
VAR = Path(os.getenv("LABORCHESTRATOR_VAR_DIR", REPO / "var"))
# The same store the qemu tests use, so the demo image is built once per checkout.
IMAGES = Path(os.getenv("LOCALCLUSTER_IMAGES", VAR / "localcluster" / "images"))
CONTAINER_IMAGES = VAR / "localcluster" / "container-images"
QEMU_PACKAGES = "qemu-system-x86 qemu-utils busybox-static cpio vde2 genisoimage dnsmasq-base iproute2"
HOUSEKEEPING_INTERVAL_SECONDS = "30"
LOCAL_CLUSTER_SHUTDOWN = "Stopped because the local cluster shut down (make run ended)."
# The embedded registry's port: the demo images' references name it (load_demo's default). When it
# is taken, another is used and load_demo moves the demo images there.
REGISTRY_PORT = int(os.getenv("LOCALCLUSTER_REGISTRY_PORT", "5055"))
# Seconds to wait for the stopped labs' namespaces (and VMs) to be gone at shutdown.
STOP_LABS_WAIT_SECONDS = "60"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True)  # noqa: S603


def choose_runtime(requested: str = "") -> tuple[str, Path | None]:
    """`qemu` with a built demo image, or `none` with the reason said out loud.

    LOCALCLUSTER_RUNTIME=none asks for simulated machines even where QEMU is installed.
    """
    if requested == "none":
        say("Simulated machines (LOCALCLUSTER_RUNTIME=none): a test pattern and an echo console.")
        return "none", None
    try:
        find_tools()
    except ToolsMissing as missing:
        say(f"No real VMs: {missing}.")
        say("Labs still start, with simulated machines (a test pattern and an echo console).")
        return "none", None
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "localcluster", "build-image", "--output", str(IMAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        say("Could not build the demo VM image; running without real VMs:")
        print(result.stderr.strip() or result.stdout.strip(), flush=True)
        say(f"It needs: sudo apt-get install {QEMU_PACKAGES} (and apt-get download for the kernel).")
        say("Labs still start, with simulated machines (a test pattern and an echo console).")
        return "none", None
    say("Preparing the desktop demo image (the first time: ~40 MB of Debian packages, a minute or two).")
    desktop = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "localcluster", "build-desktop-image", "--output", str(IMAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if desktop.returncode != 0:
        say("Could not build the desktop demo image; the desktop lab's machine will fail to start:")
        print(desktop.stderr.strip() or desktop.stdout.strip(), flush=True)
    return "qemu", IMAGES


def container_images_args() -> list[str]:
    """The tools container image for the containers demo lab (busybox-static + umoci), as an OCI
    layout the local cluster runs pods from; without its packages that lab's container cannot start."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "localcluster", "build-tools-image", "--output", str(CONTAINER_IMAGES)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        say("Could not build the tools container image; the containers demo lab will not start:")
        print(result.stderr.strip() or result.stdout.strip(), flush=True)
        return []
    return ["--container-images", str(CONTAINER_IMAGES)]


def start_processes(commands: Sequence[Sequence[str]], env: dict[str, str]) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(  # noqa: S603
            list(command), cwd=REPO, env=env, start_new_session=True, preexec_fn=die_with_parent
        )
        for command in commands
    ]


def stop_labs(env: dict[str, str], wait_seconds: str) -> None:
    """Record the embedded cluster's labs as stopped (deleting what is left of them), with the reason."""
    try:
        manage("stop_instances", "--reason", LOCAL_CLUSTER_SHUTDOWN, "--wait", wait_seconds, env=env)
    except subprocess.CalledProcessError as error:
        say(f"Could not stop the running labs (exit code {error.returncode}); the next start will.")


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def embedded_registry() -> Iterator[str | None]:
    """Debian's docker-registry on loopback, its storage kept in var/ (HOST:PORT), or None without it."""
    with contextlib.ExitStack() as stack:
        host = None
        for port in (REGISTRY_PORT, 0):
            try:
                host = stack.enter_context(run_registry(VAR / "registry", port=port)).host
                break
            except RegistryError as error:
                if port == 0 or "not installed" in str(error):
                    say(f"No embedded registry: {error}. The demo labs' machines cannot pull their images.")
                    break
                say(f"Port {port} is taken; the embedded registry takes another.")
        yield host


def push_demo_images(registry: str) -> bool:
    """The built demo images, as kernel-boot containerDisks, into the embedded registry."""
    say(f"Pushing the demo images to the embedded registry {registry} ...")
    result = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "localcluster",
            "demo-images",
            "--registry",
            registry,
            "--images",
            str(IMAGES),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        say("Could not push the demo images:")
        print(result.stderr.strip(), flush=True)
        return False
    for line in result.stdout.splitlines():
        say(f"  {line}")
    return True


def serve(
    host: str, port: int, env: dict[str, str], *, embedded_cluster: bool, registry: str | None = None
) -> int:
    manage("migrate", "--no-input", "--verbosity", "0", env=env)
    manage("ensure_admin", env=env)
    manage("load_demo", *(["--registry", registry] if registry else []), env=env)
    manage("render_tutorials", env=env)  # saved HTML through the current Markdown and sanitiser
    if embedded_cluster:
        stop_labs(env, "0")  # left over from a run that ended without stopping them (a crash)
    python = sys.executable
    processes = start_processes(
        [
            [python, "-m", "laborchestrator.serve", "--host", host, "--port", str(port)],
            [python, "manage.py", "watch_cluster"],
            [python, "manage.py", "expire", "--loop", HOUSEKEEPING_INTERVAL_SECONDS],
            [python, "manage.py", "reconcile", "--loop", HOUSEKEEPING_INTERVAL_SECONDS],
            [python, "manage.py", "send_grades", "--loop", HOUSEKEEPING_INTERVAL_SECONDS],
        ],
        env,
    )
    say(f"Lab Orchestrator is at http://{host}:{port}/ (admin: http://{host}:{port}/admin/). Ctrl-C stops.")
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        say("A process ended; stopping.")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop_processes(processes)
        if embedded_cluster:
            say("Stopping the running labs: the local cluster stops with make run ...")
            stop_labs(env, STOP_LABS_WAIT_SECONDS)


def raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    env = dict(os.environ)
    # Ctrl-C should stop us in an orderly way, not kill the children mid-write.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    if env.get("KUBECONFIG") or env.get("KUBE_IN_CLUSTER") == "1":
        say("Using the cluster from KUBECONFIG / KUBE_IN_CLUSTER; not starting the local cluster.")
        return serve(args.host, args.port, env, embedded_cluster=False)
    runtime, images = choose_runtime(env.get("LOCALCLUSTER_RUNTIME", ""))
    with embedded_registry() as registry:
        if runtime == "qemu" and registry is not None and push_demo_images(registry):
            images = None  # the demo comes from the registry, as on a real cluster
        elif runtime == "qemu":
            say(f"Images the local store {IMAGES} holds still boot under their store names.")
        say(f"Starting the local cluster (runtime {runtime}) ...")
        with start_local_cluster(
            VAR / "localcluster",
            runtime=runtime,
            images=images,
            own_session=True,
            extra_args=container_images_args(),
        ) as cluster:
            env["KUBECONFIG"] = cluster.kubeconfig
            say(f"Local cluster at {cluster.url}; kubeconfig {cluster.kubeconfig}")
            return serve(args.host, args.port, env, embedded_cluster=True, registry=registry)


if __name__ == "__main__":
    sys.exit(main())
