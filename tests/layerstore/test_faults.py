"""Faults: a SIGKILL at every store write of an import, a commit and a tag leaves a store that fsck
passes and whose tags all resolve; 8 processes importing and tagging at once lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from layerstore.base_images import import_rootfs
from layerstore.fsck import check
from layerstore.store import Store
from tests.layerstore.helpers import make_tree

# Every call that changes the file system on the way to a stored object or ref.
KILL_POINTS = ("open", "rename", "replace", "fsync", "unlink", "rmdir", "mkdir", "link", "symlink", "mknod",
               "ftruncate", "pwrite", "utime", "fchmod", "chmod", "write")


def _operation(root: Path, tree: Path, upper: Path, i: int) -> None:
    with Store.open(root) as store:
        image = import_rootfs(store, tree, f"app:{i}", source_name=str(tree))
        child = store.commit(upper, parent=image, created_by=f"RUN step {i}")
        store.tag(child, "app:latest")


def run_killed(operation: Callable[[], None], kill_at: int | None, points: tuple[str, ...] = KILL_POINTS,
               count_file: Path | None = None) -> int:
    """Fork; in the child, count the calls of `os.<points>` while running `operation` and SIGKILL
    itself at number `kill_at`; write the count to `count_file` if it gets through. Returns the
    child's wait status."""
    pid = os.fork()
    if pid == 0:
        calls = [0]

        def wrap(fn: Any) -> Any:
            def inner(*a: Any, **k: Any) -> Any:
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return fn(*a, **k)

            return inner

        try:
            for name in points:
                setattr(os, name, wrap(getattr(os, name)))
            operation()
            if count_file is not None:
                count_file.write_text(str(calls[0]))
            os._exit(0)
        except BaseException:  # noqa: BLE001 - report and leave the forked child without cleanup
            import traceback

            traceback.print_exc()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


def _assert_consistent(root: Path) -> None:
    for lock in list(root.rglob("*.lock")):  # locks of killed processes: let their 2 s pass
        os.utime(lock, (time.time() - 60, time.time() - 60))
    with Store.open(root) as store:
        errors = [p.message for p in check(store) if p.severity == "error"]
        assert errors == []
        for tag in store.tags.all():
            image = store.resolve(tag.name)
            assert image.digest == tag.digest
            for layer in image.layers:
                assert store.blobs.has(layer.digest)


@pytest.mark.slow
def test_sigkill_at_every_write_of_import_commit_and_tag(tmp_path: Path) -> None:
    root = tmp_path / "store"
    count_file = tmp_path / "count"

    def inputs(i: int) -> tuple[Path, Path]:
        tree = make_tree(tmp_path / f"tree{i}", {"etc/id": str(i), "bin/tool": "x" * 3000, "d/e/f": "f"})
        os.link(tree / "bin/tool", tree / "bin/hard")
        os.symlink("tool", tree / "bin/soft")
        upper = make_tree(tmp_path / f"upper{i}", {"etc/id": f"changed {i}", "new": "n"})
        return tree, upper

    killed = 0
    point = 0
    while True:  # kill at point 1, 2, 3, ... until a run gets through all its writes
        point += 1
        tree, upper = inputs(point)
        status = run_killed(lambda: _operation(root, tree, upper, point), point, count_file=count_file)
        _assert_consistent(root)
        shutil.rmtree(tree)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0
            break
        assert os.WTERMSIG(status) == signal.SIGKILL
        killed += 1
    assert killed > 50 and killed == point - 1
    assert int(count_file.read_text()) < point  # the run that got through had no write numbered `point`
    with Store.open(root) as store:
        assert store.resolve("app:latest").parent == store.resolve(f"app:{point}").digest
        from layerstore.gc import collect

        collect(store, grace_seconds=0)
        assert check(store) == []


def test_eight_processes_importing_and_tagging_at_once(tmp_path: Path) -> None:
    root = tmp_path / "store"
    common = make_tree(tmp_path / "common", {"same": "same"})
    script = tmp_path / "worker.sh"
    script.write_text(
        f"set -e\npb() {{ {sys.executable} -m pybuild --root {root} \"$@\"; }}\n"
        'pb import "$1" "app:$2" >/dev/null\n'
        f'pb import {common} "common:$2" >/dev/null\n'
        'pb tag "app:$2" shared:latest\n'
        'pb tag "app:$2" "extra/app$2:1"\n'
    )
    procs = []
    for i in range(8):
        tree = make_tree(tmp_path / f"t{i}", {"id": str(i), "data": os.urandom(20000).hex()})
        procs.append(subprocess.Popen(["bash", str(script), str(tree), str(i)], stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store.open(root) as store:
        assert [p for p in check(store, full=True)] == []
        tags = {t.name: t.digest for t in store.tags.all()}
        assert len(tags) == 8 * 3 + 1
        common_layers = {store.resolve(f"common:{i}").layers[0] for i in range(8)}
        assert len(common_layers) == 1  # the same tree, committed 8 times at once: one layer
        assert tags["shared:latest"] in {tags[f"app:{i}"] for i in range(8)}
        assert len(store.tags.log("shared:latest")) == 8
        index = json.loads(store.layout.index.read_text())
        assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == set(tags)
        assert os.listdir(store.tmp) == []


# -- a read-only or full store, and Ctrl-C ------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs, unmounted afterwards whatever happens."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return errors[0]


@pytest.mark.root
def test_a_read_only_store_reads_and_refuses_writes_in_one_line(small_fs: Path, tmp_path: Path) -> None:
    from tests.conftest import make_pb
    from tests.layerstore.helpers import snapshot

    root = small_fs / "store"
    pb = make_pb(root)
    tree = make_tree(tmp_path / "t", {"etc/x": "x"})
    pb("import", tree, "app:1")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    before = snapshot(root)
    for args in (["images"], ["inspect", "app:1"], ["history", "app:1"], ["log", "app:1"], ["diff", "app:1"],
                 ["fsck", "--full"], ["save", "-o", str(tmp_path / "out.tar"), "app:1"]):
        assert pb(*args).returncode == 0, args
    for args in (["tag", "app:1", "app:2"], ["rmi", "app:1"], ["import", str(tree), "app:3"], ["gc"],
                 ["load", "-i", str(tmp_path / "out.tar")]):
        line = _one_error_line(pb(*args, check=False))
        assert "Read-only file system" in line, (args, line)
    assert snapshot(root) == before


@pytest.mark.root
def test_a_full_store_fails_in_one_line_and_keeps_what_it_had(small_fs: Path, tmp_path: Path) -> None:
    from tests.conftest import make_pb

    root = small_fs / "store"
    pb = make_pb(root)
    pb("import", make_tree(tmp_path / "small", {"etc/x": "x"}), "small:1")
    big = tmp_path / "big"
    big.mkdir()
    (big / "random").write_bytes(os.urandom(8 << 20))
    subprocess.run(["tar", "-C", str(big), "-cf", str(tmp_path / "big.tar"), "."], check=True)
    for source in (big, tmp_path / "big.tar"):
        line = _one_error_line(pb("import", source, "big:1", check=False))
        assert "No space left on device" in line
        assert os.listdir(root / "tmp") == []
    assert pb("images", "-q").stdout.count("\n") == 1 and pb("fsck").stdout == "ok\n"


def _interrupted(root: Path, args: list[str], data: bytes, staging_prefix: str) -> subprocess.CompletedProcess[str]:
    """Run `pybuild ARGS` reading `data` and then nothing more from a pipe; once it is staging
    (a `tmp/<prefix>*` entry exists), press Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "pybuild", "--root", str(root), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not any(n.startswith(staging_prefix) for n in os.listdir(root / "tmp")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("command", ["import", "load"])
def test_ctrl_c_mid_import_or_load_leaves_the_store_as_it_was(command: str, tmp_path: Path) -> None:
    from tests.conftest import make_pb
    from tests.layerstore.helpers import snapshot

    root = tmp_path / "store"
    pb = make_pb(root)
    tree = make_tree(tmp_path / "t", {"a": os.urandom(3 << 20).hex()})
    pb("import", tree, "app:1")
    archive = tmp_path / "app.tar"
    if command == "import":
        subprocess.run(["tar", "-C", str(tree), "-cf", str(archive), "."], check=True)
    else:
        pb("save", "--compression", "gzip", "-o", archive, "app:1")
        pb("rmi", "app:1")
    before = snapshot(root, dir_times=False)
    data = archive.read_bytes()
    args = ["import", "-", "app:2"] if command == "import" else ["load"]
    proc = _interrupted(root, args, data[: len(data) // 2], "import-" if command == "import" else "transfer-")
    _one_error_line(proc)
    assert snapshot(root, dir_times=False) == before
