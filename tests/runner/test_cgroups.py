"""Both cgroup drivers on the real kernel: v1 (this machine's separate hierarchies) and v2 (driven
on the machine's cgroup2 mount, whatever controllers it has)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybuild.errors import RuntimeError_
from runner import cgroups
from runner.cgroups import Cgroup, Hierarchies, Limits
from tests.conftest import Pybuild

pytestmark = pytest.mark.root


def _unified_mount() -> Path | None:
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    return None


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _exercise(cg: Cgroup, proc: subprocess.Popen[bytes]) -> None:
    try:
        cg.join_pid(proc.pid)
        assert cg.pids() == [proc.pid]
        cg.freeze()
        assert cg.is_frozen()
        assert open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] in "DS"  # asleep, frozen
        cg.thaw()
        assert not cg.is_frozen()
        assert not cg.oom_killed()
        cg.kill_all()  # freezes the group while it signals, and thaws it again
        assert not cg.is_frozen()
        proc.wait(timeout=10)
    finally:
        cg.remove()
    assert not cg.exists()


def test_v1_driver_applies_limits_and_freezes(sleeper: subprocess.Popen[bytes]) -> None:
    h = cgroups.discover()
    if h.version != 1:
        pytest.skip("this machine's cgroups are v2")
    cg = cgroups.create("test-v1", Limits(memory=64 << 20, cpus=0.5, pids=7), hierarchies=h)
    try:
        assert Path(cg.dirs["memory"], "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
        assert Path(cg.dirs["cpu"], "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert Path(cg.dirs["pids"], "pids.max").read_text().strip() == "7"
        assert "c 1:3 rwm" in Path(cg.dirs["devices"], "devices.list").read_text()
    finally:
        _exercise(cg, sleeper)
    assert not (h.v1["pids"] / "pybuild" / "test-v1").exists()


def test_v2_driver_on_the_unified_hierarchy(sleeper: subprocess.Popen[bytes]) -> None:
    mount = _unified_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount")
    h = Hierarchies(2, mount, {})
    available = set((mount / "cgroup.controllers").read_text().split())
    if "memory" not in available:
        with pytest.raises(RuntimeError_, match="memory cgroup controller is not available"):
            cgroups.create("test-v2", Limits(memory=64 << 20), hierarchies=h)
    cg = cgroups.create("test-v2", Limits(), hierarchies=h)
    assert cg.version == 2 and Path(cg.dirs["unified"]).is_dir()
    _exercise(cg, sleeper)


def test_remove_is_idempotent_and_kills_what_is_left(sleeper: subprocess.Popen[bytes]) -> None:
    cg = cgroups.create("test-leftover", Limits())
    cg.join_pid(sleeper.pid)
    cg.remove()
    assert sleeper.wait(timeout=10) != 0
    cg.remove()
    assert not cg.exists()


def test_state_round_trip() -> None:
    cg = Cgroup(1, {"memory": "/sys/fs/cgroup/memory/pybuild/x"})
    assert Cgroup.from_json(cg.to_json()) == cg
    assert os.fspath(cg.dir("memory") or "") == "/sys/fs/cgroup/memory/pybuild/x"


def test_sweep_removes_only_empty_old_build_step_groups(sleeper: subprocess.Popen[bytes]) -> None:
    # what a build killed mid-step leaves (made two hours ago), a step still running, a step that
    # has just made its group, and a container's group
    killed = cgroups.create(f"{cgroups.STEP_PREFIX}killed-build", Limits())
    running = cgroups.create(f"{cgroups.STEP_PREFIX}running-step", Limits())
    starting = cgroups.create(f"{cgroups.STEP_PREFIX}starting-step", Limits())
    container = cgroups.create("0123456789abcdef-container", Limits())
    groups = (killed, running, starting, container)
    try:
        running.join_pid(sleeper.pid)
        long_ago = time.time() - 7200
        for cg in (killed, running, container):
            for d in cg.dirs.values():
                os.utime(d, (long_ago, long_ago))
        name = f"{cgroups.STEP_PREFIX}killed-build"
        assert name in cgroups.sweep_steps(3600, dry_run=True)
        assert killed.exists()
        assert name in cgroups.sweep_steps(3600)
        assert not killed.exists()
        assert running.pids() == [sleeper.pid] and starting.exists() and container.exists()
    finally:
        for cg in groups:
            cg.remove()
    assert not any(cg.exists() for cg in groups)


def test_gc_removes_the_group_of_a_killed_build_step(pb: Pybuild) -> None:
    leftover = cgroups.create(f"{cgroups.STEP_PREFIX}gc-leftover", Limits())
    try:
        long_ago = time.time() - 7200
        for d in leftover.dirs.values():
            os.utime(d, (long_ago, long_ago))
        listed = pb("gc", "--dry-run", "-v").stdout
        assert f"would remove cgroup {cgroups.STEP_PREFIX}gc-leftover" in listed and leftover.exists()
        out = pb("gc", "-v").stdout
        assert f"removed cgroup {cgroups.STEP_PREFIX}gc-leftover" in out and "build-step cgroups" in out
        assert not leftover.exists()
    finally:
        leftover.remove()
