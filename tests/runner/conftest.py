"""Fixtures for the runner's kernel tests.

- `rootfs`: a plain root file system (Debian's static busybox, its applet links, an /etc/passwd
  and /etc/group with root, nobody and a `test` user in an `extra` group), made once per session.
  It stands in for an image's unpacked layer, so the sandbox is tested without the layer store.
- `upper`: an empty upper dir for this test.
- `no_leaks`: asserts after the test that no mount under the test's tmp dir, no cgroup of ours and
  no process of the test's containers is left.
- `store` / `pbs`: a store holding busybox:latest and the CLI on it, reaped afterwards (every
  container process and supervisor killed, cgroups removed), then checked: nothing of ours left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import cgroups, state
from runner.mounts import mount_points_under
from tests.conftest import BUSYBOX, Pybuild, make_pb

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\ntest:x:1000:1000::/home/test:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\ntest:x:1000:\nextra:x:2000:test\n"


def make_busybox_rootfs(root: Path) -> Path:
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s"], check=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    return root


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox is missing (Debian package busybox-static)")
    return make_busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "lower")


@pytest.fixture
def upper(tmp_path: Path) -> Path:
    d = tmp_path / "upper"
    d.mkdir()
    return d


def our_cgroups() -> list[str]:
    """The cgroups of our containers: below the `pybuild` parent in the memory hierarchy (v1: it
    nests under this session's own memory cgroup, so other sessions' builds on this machine do not
    show up) or the unified one (v2)."""
    h = cgroups.discover()
    bases = [h.unified / "pybuild"] if h.unified else [h.v1["memory"] / "pybuild"]
    found = []
    for base in bases:
        if base.is_dir():
            found += [str(base / d) for d in os.listdir(base) if (base / d).is_dir()]
    return found


@pytest.fixture
def no_leaks(tmp_path: Path) -> Iterator[None]:
    before = set(our_cgroups())
    yield
    assert mount_points_under(tmp_path) == []
    assert set(our_cgroups()) - before == set()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def processes_of(store: Path) -> list[int]:
    """Processes that belong to containers or supervisors of `store`: their root is inside it, or
    their command line names it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if root.startswith(str(store)) or str(store).encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture
def store(busybox_store: Path) -> Iterator[Path]:
    """busybox_store, reaped afterwards: every container process and supervisor killed, cgroups
    and container dirs removed; then nothing of ours may be left."""
    cgroups_before = set(our_cgroups())
    try:
        yield busybox_store
    finally:
        for pid in processes_of(busybox_store):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cdir_root = busybox_store / "containers"
        for cdir in cdir_root.iterdir() if cdir_root.is_dir() else []:
            try:
                cg = state.load(cdir).get_cgroup()
            except (FileNotFoundError, NotADirectoryError):
                continue
            if cg is not None:
                cg.remove()
        wait_for(lambda: not processes_of(busybox_store), what="processes to die")
        assert mount_points_under(busybox_store) == []
        assert set(our_cgroups()) - cgroups_before == set()


@pytest.fixture
def pbs(store: Path) -> Pybuild:
    return make_pb(store)


def status_of(pbs: Pybuild, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(pbs("inspect", name).stdout)[0]["State"]
