"""Pulling through Debian's skopeo from a real registry (Debian's docker-registry on loopback).

Images are built as OCI layouts by localcluster/registry/containerdisk.py and pushed with skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest

from localcluster.registry.containerdisk import ContainerDiskError, build_layout, disk_files, disk_of
from localcluster.registry.pull import (
    DigestMismatch,
    ImageCache,
    NotFound,
    PullError,
    RegistryUnreachable,
    Timeout,
    Unauthorized,
    inspect_digest,
    pull_image,
)
from localcluster.registry.reference import InvalidReference, parse_reference
from localcluster.registry.server import dockerconfigjson, push


def a_disk(folder: Path, content: bytes, name: str = "disk.img", size: int = 1 << 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    disk = folder / name
    with disk.open("wb") as out:
        out.write(content)
        out.truncate(size)
    return disk


def a_layout(tmp_path: Path, content: bytes, name: str = "disk.img") -> Path:
    layout = tmp_path / f"layout-{hashlib.sha256(content).hexdigest()[:8]}"
    build_layout(layout, disk_files(a_disk(tmp_path / "disks", content, name)))
    return layout


def test_a_pushed_containerdisk_pulls_with_its_disk_owned_as_kubevirts_recipe(oci_registry, tmp_path):
    layout = a_layout(tmp_path, b"anonymous disk")
    pushed = oci_registry.push_layout(layout, "tests/anonymous:1")
    cache = ImageCache(tmp_path / "cache")

    image = pull_image(oci_registry.reference("tests/anonymous:1"), cache=cache)

    assert image.digest == pushed
    assert image.config["os"] == "linux" and image.config["architecture"] == "amd64"
    with tarfile.open(image.layers[0]) as layer:
        member = layer.getmember("disk/disk.img")
    assert (member.uid, member.gid, member.mode) == (107, 107, 0o440)
    disk, fmt = disk_of(image, tmp_path / "extracted")
    assert disk.read_bytes().startswith(b"anonymous disk") and fmt == "raw"
    assert disk.stat().st_size == 1 << 20


def test_basic_auth_through_a_pull_secret(start_oci_registry, tmp_path):
    registry = start_oci_registry(users={"ann": "s3cret"})
    registry.push_layout(a_layout(tmp_path, b"basic"), "tests/basic:1")
    reference = registry.reference("tests/basic:1")

    with pytest.raises(Unauthorized, match="authentication required"):
        pull_image(reference, cache=ImageCache(tmp_path / "anonymous"))
    with pytest.raises(Unauthorized):
        pull_image(
            reference,
            cache=ImageCache(tmp_path / "wrong"),
            credentials=dockerconfigjson(registry.host, "ann", "nope"),
        )
    image = pull_image(reference, cache=ImageCache(tmp_path / "cache"), credentials=registry.credentials())
    assert disk_of(image, tmp_path / "x")[0].read_bytes().startswith(b"basic")


def test_token_auth_through_a_pull_secret(start_oci_registry, tmp_path):
    registry = start_oci_registry(users={"bob": "t0ken"}, auth="token")
    registry.push_layout(a_layout(tmp_path, b"token"), "tests/token:1")
    reference = registry.reference("tests/token:1")

    with pytest.raises(Unauthorized):
        pull_image(
            reference,
            cache=ImageCache(tmp_path / "wrong"),
            credentials=dockerconfigjson(registry.host, "bob", "x"),
        )
    image = pull_image(reference, cache=ImageCache(tmp_path / "cache"), credentials=registry.credentials())

    assert disk_of(image, tmp_path / "x")[0].read_bytes().startswith(b"token")
    granted = [r for r in registry.token_server.requests if r["user"] == "bob"]
    assert any("repository:tests/token:pull" in r["scope"] for r in granted)


def test_a_manifest_list_pulls_the_linux_amd64_image(oci_registry, tmp_path):
    layout = tmp_path / "multi"
    amd64 = build_layout(layout, disk_files(a_disk(tmp_path / "a", b"amd64 disk")), tag="amd64")
    arm64 = build_layout(layout, disk_files(a_disk(tmp_path / "b", b"arm64 disk")), tag="arm64")
    blobs = layout / "blobs" / "sha256"
    entries = []
    for digest, arch in ((arm64, "arm64"), (amd64, "amd64")):  # amd64 second: not picked by position
        size = (blobs / digest.split(":")[1]).stat().st_size
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    ).encode()
    index_digest = hashlib.sha256(index).hexdigest()
    (blobs / index_digest).write_bytes(index)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{index_digest}",
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    )
    (layout / "index.json").write_text(json.dumps(top))
    push(f"oci:{layout}:multi", oci_registry.reference("tests/multi:1"), all_images=True)

    assert inspect_digest(oci_registry.reference("tests/multi:1")) == f"sha256:{index_digest}"
    image = pull_image(oci_registry.reference("tests/multi:1"), cache=ImageCache(tmp_path / "cache"))
    assert image.digest == amd64
    assert disk_of(image, tmp_path / "x")[0].read_bytes().startswith(b"amd64 disk")


def test_a_corrupted_blob_in_the_registry_is_a_digest_mismatch(start_oci_registry, tmp_path):
    registry = start_oci_registry()
    layout = a_layout(tmp_path, b"soon corrupted")
    registry.push_layout(layout, "tests/corrupt:1")
    manifest = json.loads(
        Path(
            layout
            / "blobs/sha256"
            / json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].split(":")[1]
        ).read_text()
    )
    blob = registry.blob_path(manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(DigestMismatch) as failure:
        pull_image(registry.reference("tests/corrupt:1"), cache=cache)
    assert "digest" in str(failure.value).lower()
    assert cache.images() == []  # nothing half-stored
    assert not any((cache.root / "blobs" / "sha256").iterdir())


def test_an_image_without_disk_fails_as_virt_handler_does(oci_registry, tmp_path):
    layout = tmp_path / "nodisk"
    build_layout(layout, {"data/readme.txt": a_disk(tmp_path / "d", b"not a disk", "readme.txt", 10)})
    oci_registry.push_layout(layout, "tests/nodisk:1")
    image = pull_image(oci_registry.reference("tests/nodisk:1"), cache=ImageCache(tmp_path / "cache"))

    with pytest.raises(
        ContainerDiskError, match=r"^Failed to check /disk for disks: open /disk: no such file"
    ):
        disk_of(image, tmp_path / "x")


def test_a_missing_image_is_not_found(oci_registry, tmp_path):
    with pytest.raises(NotFound, match="manifest unknown"):
        pull_image(oci_registry.reference("tests/absent:1"), cache=ImageCache(tmp_path / "cache"))


def test_a_registry_that_never_answers_times_out(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # and never answer
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(Timeout):
            pull_image(
                f"127.0.0.1:{listener.getsockname()[1]}/tests/hang:1",
                cache=ImageCache(tmp_path / "c"),
                timeout=3,
            )
        assert time.monotonic() - started < 15
        assert accepted, "skopeo never connected"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_the_cache_evicts_least_recently_used_images_but_not_those_in_use(oci_registry, tmp_path):
    references = []
    for number in range(3):
        layout = a_layout(tmp_path, f"image {number}".encode() + bytes(range(256)) * 4000)
        oci_registry.push_layout(layout, f"tests/evict{number}:1")
        references.append(oci_registry.reference(f"tests/evict{number}:1"))
    probe = pull_image(references[0], cache=ImageCache(tmp_path / "probe"))
    cache = ImageCache(tmp_path / "cache", max_bytes=int(probe.size * 2.5))

    first = pull_image(references[0], cache=cache)
    with cache.held(first.digest):
        second = pull_image(references[1], cache=cache)
        time.sleep(0.01)
        third = pull_image(references[2], cache=cache)  # over the limit: the second goes, the first is held
        assert set(cache.images()) == {first.digest, third.digest}
    assert cache.size() <= cache.max_bytes
    assert pull_image(references[0], cache=cache, pull_policy="IfNotPresent").digest == first.digest
    assert second.digest not in cache.images()


def test_a_big_sparse_layer_streams_with_progress(oci_registry, tmp_path):
    size = 256 << 20
    layout = tmp_path / "big"
    build_layout(layout, disk_files(a_disk(tmp_path / "big-disk", b"QFI\xfb big", "big.qcow2", size)))
    oci_registry.push_layout(layout, "tests/big:1")
    seen: list[tuple[int, int]] = []

    image = pull_image(
        oci_registry.reference("tests/big:1"),
        cache=ImageCache(tmp_path / "cache"),
        progress=lambda d, t: seen.append((d, t)),
    )

    total = seen[-1][1]
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    disk, fmt = disk_of(image, tmp_path / "x")
    assert fmt == "qcow2" and disk.stat().st_size == size
    assert disk.stat().st_blocks * 512 < 16 << 20  # written sparse, not 256 MiB of zeros


@pytest.mark.parametrize(
    "text",
    [
        "demo:latest",
        "kubevirt/cirros:1",
        "registry.example.org/Upper/case:1",
        "registry.example.org/a@sha256:12",
        "",
    ],
)
def test_references_without_a_registry_host_or_malformed_are_refused(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_references_name_their_registry_and_default_to_latest():
    ref = parse_reference("127.0.0.1:5000/laborchestrator/demo")
    assert (ref.registry, ref.repository, ref.tag, ref.is_loopback) == (
        "127.0.0.1:5000",
        "laborchestrator/demo",
        "latest",
        True,
    )
    assert not parse_reference("registry.example.org/team/disk:1.0").is_loopback


def test_concurrent_pulls_of_one_image_share_the_cache(oci_registry, tmp_path):
    oci_registry.push_layout(a_layout(tmp_path, b"shared" * 50000), "tests/shared:1")
    cache = ImageCache(tmp_path / "cache")
    results: list[object] = []

    def pull() -> None:
        try:
            results.append(pull_image(oci_registry.reference("tests/shared:1"), cache=cache))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.digest for r in results}) == 1 and cache.images() == [results[0].digest]
    assert disk_of(results[0], tmp_path / "x")[0].read_bytes().startswith(b"shared")


def test_https_verifies_the_registry_certificate(start_oci_registry, tmp_path):
    registry = start_oci_registry(https=True)
    registry.push_layout(a_layout(tmp_path, b"over https"), "tests/https:1")
    reference = registry.reference("tests/https:1")

    with pytest.raises(RegistryUnreachable, match="certificate"):
        pull_image(reference, cache=ImageCache(tmp_path / "unverified"), insecure=False)
    image = pull_image(
        reference, cache=ImageCache(tmp_path / "cache"), insecure=False, ca_dir=registry.ca_dir
    )
    assert disk_of(image, tmp_path / "x")[0].read_bytes().startswith(b"over https")


def test_a_cancelled_pull_stops_skopeo(tmp_path):
    """A hanging registry and a VMI that goes away: the pull ends at once, not at its time-out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def pull() -> None:
        try:
            pull_image(
                f"127.0.0.1:{listener.getsockname()[1]}/tests/hang:1",
                cache=ImageCache(tmp_path / "c"),
                timeout=60,
                cancel=cancel,
            )
        except PullError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=pull)
    thread.start()
    time.sleep(1)
    started = time.monotonic()
    cancel.set()
    thread.join(10)
    listener.close()
    assert not thread.is_alive() and time.monotonic() - started < 3
    assert outcome and "cancelled" in str(outcome[0])
    assert not [line for line in os.popen("ps -eo args").read().splitlines() if "tests/hang:1" in line]
