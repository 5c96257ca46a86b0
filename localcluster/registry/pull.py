"""Pulling images with Debian's `skopeo` into a cache by digest.

    cache = ImageCache(Path("var/localcluster/pulls"), max_bytes=20 << 30)
    image = pull_image("127.0.0.1:5000/laborchestrator/demo:1", cache=cache, progress=print)
    image.digest, image.layout_dir, image.manifest, image.config, image.layers

skopeo owns the protocol: HTTPS or HTTP, anonymous, basic and bearer-token auth (the token dance is
containers/image's), manifest lists and OCI indexes (`--override-os/arch` pick linux/amd64), and
every blob streamed to disk and checked against its digest. What is ours:

- the cache (cache.py's layout below): blobs shared by all images in one `--dest-shared-blob-dir`,
  one small OCI layout per image, named by the manifest digest the registry serves (the digest
  users pin by), with LRU eviction past a size limit that never evicts an image in use;
- progress: the bytes of the image's blobs already on disk (finished, or skopeo's temporary file);
- errors: skopeo's message, classified (NotFound, Unauthorized, DigestMismatch, Timeout,
  RegistryUnreachable) so the cluster can report them as the kubelet does.

Plain HTTP (`--src-tls-verify=false`) is used only for loopback registries and those the caller
declares insecure (`insecure=True`; `insecure=False` verifies even a loopback one); everything else
is HTTPS with the system's CAs, or the CA certificates (*.crt) in `ca_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster.registry.reference import DIGEST, InvalidReference, Reference, parse_reference

__all__ = [
    "DigestMismatch",
    "ImageCache",
    "InvalidReference",
    "NotFound",
    "PullError",
    "PulledImage",
    "RegistryUnreachable",
    "SkopeoMissing",
    "Timeout",
    "Unauthorized",
    "inspect_digest",
    "pull_image",
]

SKOPEO = "skopeo"
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
PLATFORM = {"os": "linux", "architecture": "amd64"}
Progress = Callable[[int, int], None]  # (bytes on disk, bytes in total)


class PullError(Exception):
    """A pull that failed; the message is skopeo's (or ours, when skopeo never answered)."""

    reason = "PullFailed"


class NotFound(PullError):
    reason = "NotFound"


class Unauthorized(PullError):
    reason = "Unauthorized"


class DigestMismatch(PullError):
    reason = "DigestMismatch"


class Timeout(PullError):
    reason = "Timeout"


class RegistryUnreachable(PullError):
    reason = "RegistryUnreachable"


class SkopeoMissing(PullError):
    reason = "SkopeoMissing"


# containers/image's wording (docker/errors.go, docker_client.go, internal/putblobdigest, Go's net).
_CLASSIFIERS: tuple[tuple[type[PullError], tuple[str, ...]], ...] = (
    (
        Timeout,
        ("context deadline exceeded", "i/o timeout", "timeout awaiting response", "tls handshake timeout"),
    ),
    (DigestMismatch, ("digest did not match", "does not match digest", "digest mismatch", "computed digest")),
    (Unauthorized, ("unauthorized", "authentication required", "denied", "invalid username/password", "401")),
    (NotFound, ("manifest unknown", "name unknown", "not found", "404")),
    (
        RegistryUnreachable,
        ("connection refused", "no such host", "dial tcp", "server gave http response", "certificate", "eof"),
    ),
)


def classify(message: str) -> type[PullError]:
    lowered = message.lower()
    for kind, needles in _CLASSIFIERS:
        if any(needle in lowered for needle in needles):
            return kind
    return PullError


@dataclass(frozen=True)
class PulledImage:
    reference: str
    digest: str  # of the manifest the registry serves for linux/amd64
    layout_dir: Path  # an OCI layout (index.json, oci-layout); its blobs are in blobs_dir
    blobs_dir: Path
    manifest: dict[str, Any]  # as stored in the layout (skopeo writes OCI media types)
    config: dict[str, Any]
    size: int

    @property
    def layers(self) -> list[Path]:
        """The layer blobs, lowest first."""
        return [self.blob(layer["digest"]) for layer in self.manifest.get("layers", [])]

    def blob(self, digest: str) -> Path:
        algorithm, hexdigest = digest.split(":", 1)
        return self.blobs_dir / algorithm / hexdigest


class ImageCache:
    """Pulled images by manifest digest, shared by every VMI of one local cluster process.

    root/blobs/sha256/<hex>           every blob (skopeo's --dest-shared-blob-dir)
    root/images/<hex>/                one OCI layout per image + pulled.json (reference, manifest,
                                      size); its mtime is the last use
    root/tags.json                    reference -> digest, for IfNotPresent starts without the registry
    root/partial/                     layouts being written

    Eviction runs when no pull is under way (a blob another pull is about to reuse is never
    removed), drops least recently used images not `held`, then the blobs no remaining image names.
    """

    def __init__(self, root: Path, max_bytes: int = 20 << 30) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.blobs_dir = self.root / "blobs"
        self.images_dir = self.root / "images"
        self.partial_dir = self.root / "partial"
        for folder in (self.blobs_dir / "sha256", self.images_dir, self.partial_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.policy = self.root / "policy.json"
        # Signatures are not checked, as the kubelet does not check them for a containerDisk.
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._pulls = 0

    # -- lookups ------------------------------------------------------------------------------------
    def _image_dir(self, digest: str) -> Path:
        return self.images_dir / digest.split(":", 1)[1]

    def get(self, digest: str) -> PulledImage | None:
        folder = self._image_dir(digest)
        meta_file = folder / "pulled.json"
        if not meta_file.is_file():
            return None
        meta = json.loads(meta_file.read_text())
        image = PulledImage(
            reference=meta["reference"],
            digest=digest,
            layout_dir=folder,
            blobs_dir=self.blobs_dir,
            manifest=meta["manifest"],
            config=meta["config"],
            size=meta["size"],
        )
        if not all(
            path.is_file() for path in [image.blob(image.manifest["config"]["digest"]), *image.layers]
        ):
            return None
        os.utime(folder)
        return image

    def tagged(self, reference: Reference) -> str | None:
        return self._tags().get(str(reference))

    def _tags(self) -> dict[str, str]:
        path = self.root / "tags.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def unpacked_dir(self, digest: str) -> Path:
        """Where files taken out of the image's layers are kept (evicted with the image)."""
        return self.root / "unpacked" / digest.split(":", 1)[1]

    def images(self) -> list[str]:
        return sorted(f"sha256:{folder.name}" for folder in self.images_dir.iterdir() if folder.is_dir())

    def size(self) -> int:
        """Bytes on disk: blobs, and what was unpacked from them (sparse files count what they use)."""
        blobs = sum(path.stat().st_size for path in (self.blobs_dir / "sha256").iterdir() if path.is_file())
        unpacked = sum(
            path.stat().st_blocks * 512 for path in (self.root / "unpacked").rglob("*") if path.is_file()
        )
        return blobs + unpacked

    # -- in use -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def held(self, digest: str) -> Iterator[None]:
        self.hold(digest)
        try:
            yield
        finally:
            self.release(digest)

    def hold(self, digest: str) -> None:
        with self._lock:
            self._held[digest] = self._held.get(digest, 0) + 1

    def release(self, digest: str) -> None:
        with self._lock:
            left = self._held.get(digest, 0) - 1
            if left > 0:
                self._held[digest] = left
            else:
                self._held.pop(digest, None)
        self.evict()

    # -- writing ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def pulling(self) -> Iterator[Path]:
        """A fresh layout folder for one pull; eviction waits until no pull is under way."""
        with self._lock:
            self._pulls += 1
        folder = Path(tempfile.mkdtemp(dir=self.partial_dir))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                self._pulls -= 1
            self.evict()

    def store(self, layout: Path, reference: Reference, digest: str, config: dict[str, Any]) -> PulledImage:
        index = json.loads((layout / "index.json").read_text())
        stored = index["manifests"][0]["digest"]
        manifest = json.loads(self._blob(stored).read_text())
        size = sum(item["size"] for item in [manifest["config"], *manifest["layers"]])
        (layout / "pulled.json").write_text(
            json.dumps({"reference": str(reference), "manifest": manifest, "config": config, "size": size})
        )
        target = self._image_dir(digest)
        with self._lock:
            if not (target / "pulled.json").is_file():  # else a concurrent pull stored it first
                shutil.rmtree(target, ignore_errors=True)
                layout.rename(target)
        self.remember(reference, digest)
        image = self.get(digest)
        assert image is not None, f"{digest} stored but incomplete"
        return image

    def remember(self, reference: Reference, digest: str) -> None:
        """`reference` (a tag, or an index's digest) names the image `digest`."""
        with self._lock:
            tags = self._tags()
            tags[str(reference)] = digest
            tmp = self.root / "tags.json.tmp"
            tmp.write_text(json.dumps(tags, indent=1))
            tmp.replace(self.root / "tags.json")

    def _blob(self, digest: str) -> Path:
        algorithm, hexdigest = digest.split(":", 1)
        return self.blobs_dir / algorithm / hexdigest

    def evict(self) -> list[str]:
        """Least recently used images out until the blobs fit in max_bytes; returns their digests."""
        with self._lock:
            if self._pulls:
                return []
            if self.size() <= self.max_bytes:
                return []
            folders = sorted(
                (f for f in self.images_dir.iterdir() if f.is_dir()),
                key=lambda folder: folder.stat().st_mtime,
            )
            evicted: list[str] = []
            for folder in folders:
                digest = f"sha256:{folder.name}"
                if digest in self._held:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(self.unpacked_dir(digest), ignore_errors=True)
                evicted.append(digest)
                self._collect_blobs()
                if self.size() <= self.max_bytes:
                    break
            if evicted:
                tags = {tag: d for tag, d in self._tags().items() if d not in evicted}
                (self.root / "tags.json").write_text(json.dumps(tags, indent=1))
            return evicted

    def _collect_blobs(self) -> None:
        wanted: set[str] = set()
        for meta_file in self.images_dir.glob("*/pulled.json"):
            meta = json.loads(meta_file.read_text())
            manifest = meta["manifest"]
            wanted.update(
                item["digest"].split(":", 1)[1] for item in [manifest["config"], *manifest["layers"]]
            )
            index = json.loads((meta_file.parent / "index.json").read_text())
            wanted.update(m["digest"].split(":", 1)[1] for m in index["manifests"])
        for blob in (self.blobs_dir / "sha256").iterdir():
            if blob.name not in wanted:
                blob.unlink(missing_ok=True)


# -- skopeo --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    """How skopeo reaches one registry: TLS or not, whose CAs, which credentials."""

    tls_verify: bool
    authfile: Path | None
    ca_dir: Path | None


def _skopeo(
    args: list[str],
    *,
    timeout: float,
    policy: Path | None = None,
    cancel: threading.Event | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo; killed when `timeout` passes (its own --command-timeout should come first) or
    `cancel` is set (the VMI went away: nothing keeps pulling for nobody)."""
    command = [SKOPEO, "--command-timeout", f"{max(1, int(timeout))}s"]
    command += ["--override-os", PLATFORM["os"], "--override-arch", PLATFORM["architecture"]]
    if policy is not None:
        command += ["--policy", str(policy)]
    env = dict(os.environ)
    if env.get("SSL_CERT_FILE") == os.devnull:  # the local cluster's own start-up shortcut (harness.py)
        env.pop("SSL_CERT_FILE")
    try:
        process = subprocess.Popen(  # noqa: S603 (argument list, no shell)
            command + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except FileNotFoundError as exc:
        raise SkopeoMissing("skopeo is not installed (Debian package skopeo; make system-deps)") from exc
    deadline = time.monotonic() + timeout + 5
    while True:
        try:
            stdout, stderr = process.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            cancelled = cancel is not None and cancel.is_set()
            if cancelled or time.monotonic() > deadline:
                process.kill()
                process.communicate()
                if cancelled:
                    raise PullError("the pull was cancelled") from None
                raise Timeout(f"no answer from the registry in {timeout:.0f} s") from None
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip().splitlines()
        text = skopeo_message(message[-1] if message else f"skopeo exited with {process.returncode}")
        raise classify(text)(text)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def skopeo_message(line: str) -> str:
    """skopeo's error line without its logrus framing and the image-name preamble."""
    text = line.split('msg="', 1)[-1].rstrip('"').replace('\\"', '"') if 'msg="' in line else line
    if text.startswith("Error parsing image name") and '": ' in text:
        text = text.split('": ', 1)[1]
    return text.strip()


def _source_args(source: _Source, prefix: str = "--") -> list[str]:
    args = [f"{prefix}tls-verify={'true' if source.tls_verify else 'false'}"]
    if source.authfile is not None:
        args += [f"{prefix}authfile", str(source.authfile)]
    if source.ca_dir is not None:
        args += [f"{prefix}cert-dir", str(source.ca_dir)]
    return args


@contextlib.contextmanager
def authfile_for(credentials: dict[str, Any] | None) -> Iterator[Path | None]:
    """A dockerconfigjson (a pull Secret's `.dockerconfigjson`), as a 0600 file for skopeo's --authfile."""
    if credentials is None:
        yield None
        return
    if not isinstance(credentials.get("auths"), dict):
        raise Unauthorized('pull secret: .dockerconfigjson has no "auths" object')
    fd, name = tempfile.mkstemp(prefix="auth-", suffix=".json")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": credentials["auths"]}, handle)
        yield Path(name)
    finally:
        os.unlink(name)


def _resolve(
    ref: Reference, source: _Source, timeout: float, cancel: threading.Event | None = None
) -> tuple[str, dict[str, Any]]:
    """The digest and manifest of the linux/amd64 image `ref` names (through an index if it is one)."""
    raw = _skopeo(
        ["inspect", "--raw", *_source_args(source, "--"), f"docker://{ref.for_pull}"],
        timeout=timeout,
        cancel=cancel,
    ).stdout
    manifest = json.loads(raw)
    digest = ref.digest or "sha256:" + hashlib.sha256(raw).hexdigest()
    if ref.digest and "sha256:" + hashlib.sha256(raw).hexdigest() != ref.digest:
        raise DigestMismatch(f"manifest of {ref} does not match its digest")
    if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
        for entry in manifest.get("manifests", []):
            platform = entry.get("platform", {})
            if (
                platform.get("os") == PLATFORM["os"]
                and platform.get("architecture") == PLATFORM["architecture"]
            ):
                return _resolve(ref.with_digest(entry["digest"]), source, timeout, cancel)
        raise NotFound(f"{ref}: no linux/amd64 image in its manifest list")
    return digest, manifest


def _watch_progress(
    layout: Path, blobs_dir: Path, blobs: list[dict[str, Any]], progress: Progress, stop: threading.Event
) -> None:
    total = sum(blob["size"] for blob in blobs)
    last = -1
    while not stop.wait(0.25):
        done = 0
        for blob in blobs:
            path = blobs_dir / "sha256" / blob["digest"].split(":", 1)[1]
            if path.is_file():
                done += blob["size"]
        # skopeo streams a blob into a temporary file in the layout, then renames it into place.
        for partial in layout.glob("oci-put-blob*"):
            with contextlib.suppress(OSError):
                done += partial.stat().st_size
        done = min(done, total)
        if done != last:
            progress(done, total)
            last = done


def _tls_verify(ref: Reference, insecure: bool | None) -> bool:
    """HTTPS with verified certificates, unless the caller says the registry is insecure, or (when
    it says nothing) the registry is on loopback, where HTTP is allowed as for `make run`'s."""
    return not insecure if insecure is not None else not ref.is_loopback


def inspect_digest(
    reference: str,
    *,
    credentials: dict[str, Any] | None = None,
    insecure: bool | None = None,
    ca_dir: Path | None = None,
    timeout: float = 10,
) -> str:
    """The digest `reference` resolves to now (an index's own digest for a manifest list)."""
    ref = parse_reference(reference)
    with authfile_for(credentials) as authfile:
        source = _Source(_tls_verify(ref, insecure), authfile, ca_dir)
        raw = _skopeo(
            ["inspect", "--raw", *_source_args(source), f"docker://{ref.for_pull}"], timeout=timeout
        ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def pull_image(
    reference: str,
    *,
    cache: ImageCache,
    credentials: dict[str, Any] | None = None,
    insecure: bool | None = None,
    ca_dir: Path | None = None,
    progress: Progress | None = None,
    timeout: float = 600,
    pull_policy: str = "IfNotPresent",
    cancel: threading.Event | None = None,
) -> PulledImage:
    """Pull `reference` (linux/amd64) into `cache`, or find it there; raises a PullError subclass.

    `pull_policy` is the kubelet's: IfNotPresent uses a tag pulled before without asking the
    registry, Always asks the registry which digest the tag names now (the blobs still come from
    the cache when it has them). Setting `cancel` stops the pull (skopeo is killed; PullError).
    """
    ref = parse_reference(reference)
    if ref.digest and (image := cache.get(ref.digest)) is not None:
        return image
    if (
        pull_policy == "IfNotPresent"
        and (known := cache.tagged(ref))
        and (image := cache.get(known)) is not None
    ):
        return image
    deadline = time.monotonic() + timeout
    with authfile_for(credentials) as authfile:
        source = _Source(_tls_verify(ref, insecure), authfile, ca_dir)
        digest, manifest = _resolve(ref, source, min(timeout, 60), cancel)
        if (image := cache.get(digest)) is not None:
            cache.remember(ref, digest)
            return image
        blobs = [manifest["config"], *manifest.get("layers", [])]
        with cache.pulling() as layout:
            stop = threading.Event()
            watcher = None
            if progress is not None:
                progress(0, sum(blob["size"] for blob in blobs))
                watcher = threading.Thread(
                    target=_watch_progress, args=(layout, cache.blobs_dir, blobs, progress, stop), daemon=True
                )
                watcher.start()
            try:
                _skopeo(
                    [
                        "copy",
                        "--quiet",
                        "--dest-oci-accept-uncompressed-layers",
                        "--dest-shared-blob-dir",
                        str(cache.blobs_dir),
                        *_source_args(source, "--src-"),
                        f"docker://{ref.with_digest(digest)}",
                        f"oci:{layout}:image",
                    ],
                    timeout=max(1.0, deadline - time.monotonic()),
                    policy=cache.policy,
                    cancel=cancel,
                )
            finally:
                stop.set()
                if watcher is not None:
                    watcher.join()
            config = json.loads(
                (cache.blobs_dir / "sha256" / manifest["config"]["digest"].split(":", 1)[1]).read_text()
            )
            image = cache.store(layout, ref, digest, config)
    if progress is not None:
        progress(image.size, image.size)
    return image


def valid_digest(value: str) -> bool:
    return bool(DIGEST.match(value))
