"""Source digests for cache keys: content, mode, ownership and link targets, never times; and a
stat cache that is trusted only when it is safe to."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from builder.contenthash import Hasher, StatCache, statcache_path
from builder.context import SourceTree
from tests.builder.trees import ignoring, make_tree

LATER = 10_000_000_000  # a clock 10 s ahead: files look settled long before they were read


def later_clock() -> int:
    return time.time_ns() + LATER


def digest(root: Path, rel: str = "", cache: StatCache | None = None, **kw: object) -> str:
    tree = SourceTree(root, **kw)  # type: ignore[arg-type]
    return Hasher(tree, cache, clock=later_clock).digest(tree.entry(rel) if rel else tree.entry("/"))


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    make_tree(root, {"a.txt": "hello", "dir/b.bin": "0123456789", "dir/link": "->../a.txt", "empty/": None})
    return root


def test_touch_keeps_the_digest(ctx: Path) -> None:
    before = digest(ctx)
    os.utime(ctx / "a.txt", ns=(1, 1))
    os.utime(ctx / "dir", ns=(5, 5))
    assert digest(ctx) == before


def test_new_bytes_with_size_and_mtime_kept_change_the_digest(ctx: Path) -> None:
    cache = StatCache()
    before = digest(ctx, cache=cache)
    st = os.stat(ctx / "dir/b.bin")
    (ctx / "dir/b.bin").write_text("9876543210")
    os.utime(ctx / "dir/b.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(ctx / "dir/b.bin").st_size == st.st_size
    assert digest(ctx, cache=cache) != before


@pytest.mark.parametrize(
    "change",
    [
        lambda r: os.chmod(r / "a.txt", 0o600),
        lambda r: (os.unlink(r / "dir/link"), os.symlink("../other", r / "dir/link")),
        lambda r: (r / "new").write_text(""),
        lambda r: os.rename(r / "a.txt", r / "c.txt"),
        lambda r: os.rmdir(r / "empty"),
        lambda r: os.setxattr(r / "a.txt", "user.note", b"x"),
    ],
    ids=["mode", "symlink-target", "added-file", "renamed", "removed-dir", "xattr"],
)
def test_metadata_changes_change_the_digest(ctx: Path, change: object) -> None:
    before = digest(ctx)
    change(ctx)  # type: ignore[operator]
    assert digest(ctx) != before


@pytest.mark.root
def test_ownership_counts_for_stages_but_not_for_the_context(ctx: Path) -> None:
    stage_before = digest(ctx)
    context_before = digest(ctx, reset_owner=True)
    os.chown(ctx / "a.txt", 1234, 1234)
    assert digest(ctx) != stage_before
    assert digest(ctx, reset_owner=True) == context_before


def test_hardlinks_are_part_of_the_digest(tmp_path: Path) -> None:
    make_tree(tmp_path / "copies", {"x": "same", "y": "same"})
    make_tree(tmp_path / "links", {"x": "same"})
    os.link(tmp_path / "links/x", tmp_path / "links/y")
    assert digest(tmp_path / "copies") != digest(tmp_path / "links")


def test_ignored_files_are_not_part_of_the_digest(ctx: Path) -> None:
    before = digest(ctx, ignore=ignoring("*.log"))
    (ctx / "debug.log").write_text("noise")
    assert digest(ctx, ignore=ignoring("*.log")) == before


def test_digest_of_a_source_does_not_depend_on_its_name(tmp_path: Path) -> None:
    make_tree(tmp_path, {"one/f": "x", "two/f": "x"})
    assert digest(tmp_path, "one") == digest(tmp_path, "two")


def test_stat_cache_persists_and_spares_reading(ctx: Path, tmp_path: Path) -> None:
    path = statcache_path(tmp_path / "store", ctx)
    cache = StatCache(path)
    tree = SourceTree(ctx)
    first = Hasher(tree, cache, clock=later_clock)
    d1 = first.digest(tree.entry("/"))
    assert first.files_read == 2
    cache.save()
    again = Hasher(SourceTree(ctx), StatCache(path), clock=later_clock)
    assert again.digest(tree.entry("/")) == d1
    assert again.files_read == 0
    # a write changes ctime, so the entry no longer matches even with mtime restored
    st = os.stat(ctx / "a.txt")
    (ctx / "a.txt").write_text("HELLO")
    os.utime(ctx / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    third = Hasher(SourceTree(ctx), StatCache(path), clock=later_clock)
    assert third.digest(tree.entry("/")) != d1
    assert third.files_read == 1


def test_racy_entries_are_not_trusted(ctx: Path) -> None:
    cache = StatCache()
    tree = SourceTree(ctx)
    # read in the same tick as the last change: a later change could keep ctime, so the
    # entries are recorded but never trusted
    newest = max(os.lstat(p).st_ctime_ns for p in ctx.rglob("*"))
    Hasher(tree, cache, clock=lambda: newest + 1_000_000).digest(tree.entry("/"))
    again = Hasher(tree, cache, clock=later_clock)
    again.digest(tree.entry("/"))
    assert again.files_read == 2


def test_corrupt_stat_cache_is_ignored(ctx: Path, tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text("{not json")
    cache = StatCache(path)
    tree = SourceTree(ctx)
    assert Hasher(tree, cache, clock=later_clock).digest(tree.entry("/")) == digest(ctx)
    cache.save()
    assert StatCache(path).lookup("a.txt", os.lstat(ctx / "a.txt")) is not None
