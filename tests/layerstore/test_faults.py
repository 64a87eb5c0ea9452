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
from collections.abc import Callable
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
