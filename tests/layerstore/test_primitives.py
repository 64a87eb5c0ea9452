"""The store's write and lock primitives: atomic replace, ref compare-and-swap, stale locks."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from layerstore.atomic import atomic_write, atomic_writer
from layerstore.locks import RefChanged, locked_ref, read_ref, store_lock, update_ref
from layerstore.reference import parse_reference
from pybuild.errors import ParseError, StoreError


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_writer_leaves_target_untouched_on_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_update_ref_compare_and_swap(tmp_path: Path) -> None:
    ref = tmp_path / "refs" / "x"
    assert update_ref(ref, "a", expected=None) is None
    assert update_ref(ref, "b", expected="a") == "a"
    with pytest.raises(RefChanged):
        update_ref(ref, "c", expected="a")
    assert read_ref(ref) == "b"
    update_ref(ref, None)
    assert read_ref(ref) is None
    assert not (tmp_path / "refs" / "x.lock").exists()


def test_update_ref_runs_its_hook_under_the_lock_only_when_something_changes(tmp_path: Path) -> None:
    ref = tmp_path / "refs" / "x"
    seen: list[tuple[str | None, bool]] = []

    def hook(old: str | None) -> None:
        seen.append((old, (tmp_path / "refs" / "x.lock").exists()))

    update_ref(ref, "a", before=hook)
    update_ref(ref, "b", expected="a", before=hook)
    with pytest.raises(RefChanged, match="tag app:1 changed concurrently"):
        update_ref(ref, "c", expected="a", before=hook, what="tag app:1")
    update_ref(ref, None, before=hook)
    update_ref(ref, None, before=hook)  # already gone: nothing to do, nothing logged
    assert seen == [(None, True), ("a", True), ("b", True)]

    def failing(old: str | None) -> None:
        raise OSError("the reflog's disk is full")

    with pytest.raises(OSError):
        update_ref(ref, "d", before=failing)
    assert read_ref(ref) is None and not (tmp_path / "refs" / "x.lock").exists()


def test_store_lock_is_taken_on_a_store_that_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    root = tmp_path / "s"
    with store_lock(root):
        pass
    real_open = os.open

    def read_only_mount(path: object, flags: int, *args: object) -> int:
        if flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only_mount)
    with store_lock(root, exclusive=True):
        pass
    with pytest.raises(OSError):
        with store_lock(tmp_path / "never-made"):
            pass


def _hold_lock_then_die(ref: Path) -> None:
    with locked_ref(ref):
        os.kill(os.getpid(), signal.SIGKILL)


def test_stale_ref_lock_of_killed_process_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = tmp_path / "ref"
    p = multiprocessing.get_context("fork").Process(target=_hold_lock_then_die, args=(ref,))
    p.start()
    p.join(10)
    assert p.exitcode == -signal.SIGKILL
    lock = tmp_path / "ref.lock"
    assert lock.exists()
    old = time.time() - 60
    os.utime(lock, (old, old))
    update_ref(ref, "new", timeout=5)
    assert read_ref(ref) == "new"


def test_live_ref_lock_times_out_with_store_error(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    with locked_ref(ref):
        with pytest.raises(StoreError, match="is locked"):
            update_ref(ref, "x", timeout=0.2)


def test_exclusive_store_lock_waits_for_shared(tmp_path: Path) -> None:
    with store_lock(tmp_path):
        with store_lock(tmp_path):  # shared locks coexist
            pass
        with pytest.raises(StoreError, match="locked"):
            with store_lock(tmp_path, exclusive=True, timeout=0.1):
                pass


@pytest.mark.parametrize(
    "text, full, familiar",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("app:1", "docker.io/library/app:1", "app:1"),
        ("user/app:2", "docker.io/user/app:2", "user/app:2"),
        ("localhost:5000/x/y:t", "localhost:5000/x/y:t", "localhost:5000/x/y:t"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "alpine:3"),
        ("quay.io/a/b@sha256:" + "a" * 64, "quay.io/a/b@sha256:" + "a" * 64, "quay.io/a/b@sha256:" + "a" * 64),
    ],
)
def test_reference_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == full
    assert ref.familiar == familiar


@pytest.mark.parametrize("text", ["", "UPPER", "a:b:c", "app:", "x@sha256:12", "-bad", "a//b"])
def test_invalid_references_are_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_reference(text)
