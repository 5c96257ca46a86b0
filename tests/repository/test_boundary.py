"""The guard that fails the session when a code path reads beside the checkout."""

from pathlib import Path

from tests.repository.boundary import REPO, BoundaryWatch


def test_a_read_of_the_sibling_shared_folder_is_recorded(tmp_path):
    repo = tmp_path / "checkout"
    watch = BoundaryWatch(repo)

    watch.record("open", (str(tmp_path / "shared" / "schemas" / "kubevirt-v1-swagger.json"), "r", 0))
    watch.record("os.listdir", (str(repo / ".." / "shared"),))
    watch.record("os.scandir", (Path(tmp_path),))

    assert watch.outside == [
        f"open {tmp_path}/shared/schemas/kubevirt-v1-swagger.json",
        f"os.listdir {repo}/../shared",
        f"os.scandir {tmp_path}",
    ]


def test_reads_inside_the_checkout_and_elsewhere_are_not(tmp_path):
    repo = tmp_path / "checkout"
    watch = BoundaryWatch(repo)

    watch.record("open", (str(repo / "localcluster" / "schemas" / "kubevirt-v1-swagger.json"), "r", 0))
    watch.record("open", (str(repo), "r", 0))
    watch.record("open", (str(tmp_path.parent / "elsewhere"), "r", 0))  # not beside the checkout
    watch.record("open", ("/usr/lib/python3/dist-packages/x.py", "r", 0))
    watch.record("open", (3, "r", 0))  # a file descriptor
    watch.record("socket.connect", (str(tmp_path / "shared"),))

    assert watch.outside == []


def test_the_suite_watches_this_checkout():
    assert (REPO / "Makefile").is_file()
    assert (REPO / "localcluster" / "schemas" / "kubevirt-v1-swagger.json").is_file()
