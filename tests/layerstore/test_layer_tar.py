"""Writing a tree as a layer tar: in one process or with workers, the same bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from layerstore import entry_writer, layer_tar
from layerstore.layer_tar import WhiteoutNameError, write_tree
from pybuild.errors import StoreError
from tests.layerstore.helpers import make_tree, make_varied_tree


def _digest(root: Path, workers: int | None, source_date_epoch: int | None = None) -> str:
    h = hashlib.sha256()
    write_tree(root, h.update, workers=workers, source_date_epoch=source_date_epoch)
    return h.hexdigest()


def _small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of a few entries and of a few kilobytes: every kind of event crosses run and worker
    boundaries (hardlinks whose first path is in another run, files streamed for size)."""
    monkeypatch.setattr(layer_tar, "RUN_ENTRIES", 7)
    monkeypatch.setattr(entry_writer, "RUN_BYTES", 3000)
    monkeypatch.setattr(entry_writer, "BIG", 100_000)


def _plain_tree(root: Path) -> Path:
    files: dict[str, str | bytes] = {f"d{i % 9}/f{i}": b"x" * (i * 97 % 5000) for i in range(300)}
    files.update({"big/one": os.urandom(300_000), "big/two": b"y" * 2_000_000, "top": "t"})
    make_tree(root, files)
    os.link(root / "big/one", root / "a-link-first")
    os.link(root / "d3/f3", root / "d8/z-link")
    os.symlink("d1/f1", root / "sym")
    for dirpath, dirs, names in os.walk(root):
        for n in dirs + names:
            os.utime(os.path.join(dirpath, n), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    return root


def test_workers_write_the_same_bytes_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _plain_tree(tmp_path / "t")
    serial = _digest(tree, 0)
    _small_runs(monkeypatch)
    assert {_digest(tree, w) for w in (0, 1, 2, 3)} == {serial}


@pytest.mark.root
def test_workers_write_the_same_bytes_for_every_kind_of_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_varied_tree(tmp_path / "t")
    expected = {_digest(tree, 0, source_date_epoch=e) for e in (None, 1_700_000_100)}
    _small_runs(monkeypatch)
    for workers in (0, 2, 3):
        assert {_digest(tree, workers, source_date_epoch=e) for e in (None, 1_700_000_100)} == expected


def test_a_large_tree_uses_workers_by_itself_and_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _plain_tree(tmp_path / "t")
    monkeypatch.setattr(layer_tar, "PARALLEL_AFTER", 50)
    assert _digest(tree, None) == _digest(tree, 0)


def test_an_error_in_a_worker_is_raised_and_no_worker_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _plain_tree(tmp_path / "t")
    real = entry_writer.regular_header

    def failing(rel: bytes, *args: object) -> bytes:
        if rel == b"d5/f50":
            raise StoreError("d5/f50: cannot be read")
        return real(rel, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(entry_writer, "regular_header", failing)  # inherited by the forked workers
    _small_runs(monkeypatch)
    for workers in (0, 2):
        with pytest.raises(StoreError, match="d5/f50: cannot be read"):
            _digest(tree, workers)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every worker was reaped


def test_a_real_wh_file_is_refused_with_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = _plain_tree(tmp_path / "t")
    (tree / "d4/.wh.real").write_text("data")
    _small_runs(monkeypatch)
    with pytest.raises(WhiteoutNameError, match=r"d4/\.wh\.real"):
        _digest(tree, 2)
