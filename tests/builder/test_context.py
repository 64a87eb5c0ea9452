"""The build context as COPY sees it: ignore rules, clamped paths, symlinks that cannot escape,
BuildKit's wildcard resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.context import SourceError, SourceTree, clamp
from pybuild.errors import NotFound
from tests.builder.trees import ignoring, make_tree


@pytest.mark.parametrize(
    ("path", "rel"),
    [("a", "a"), ("/a/./b/", "a/b"), ("../../x", "x"), ("a/../../../b", "b"), ("/", ""), (".", ""), ("", "")],
)
def test_sources_are_clamped_inside_the_context(path: str, rel: str) -> None:
    assert clamp(path) == rel


def test_ignored_files_do_not_exist(tmp_path: Path) -> None:
    make_tree(tmp_path, {"keep.txt": "k", "drop.log": "d", "sub/a.log": "x", "sub/b.txt": "y"})
    tree = SourceTree(tmp_path, ignore=ignoring("*.log"))
    assert [e.rel for e in tree.walk("")] == ["keep.txt", "sub", "sub/a.log", "sub/b.txt"]
    with pytest.raises(NotFound, match=r'"drop.log": not found in the build context or excluded by \.dockerignore'):
        tree.entry("drop.log")
    assert tree.entry("sub/a.log").rel == "sub/a.log"  # no implicit **/


def test_exception_reincludes_inside_an_excluded_directory(tmp_path: Path) -> None:
    make_tree(tmp_path, {"docs/keep.md": "k", "docs/drop.md": "d", "docs/deep/x.md": "x", "other/y": "y"})
    tree = SourceTree(tmp_path, ignore=ignoring("docs", "other", "!docs/keep.md"))
    assert [(e.rel, e.excluded) for e in tree.walk("")] == [("docs", True), ("docs/keep.md", False)]
    assert tree.entry("docs").is_dir
    with pytest.raises(NotFound):
        tree.entry("docs/drop.md")
    with pytest.raises(NotFound):
        tree.entry("other")


def test_excluded_directories_are_walked_only_where_an_exception_can_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path, {"node_modules/pkg/index.js": "", "build/out/keep.txt": "k", "src/a.c": ""})
    scanned: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: str | os.PathLike[str]) -> object:
        scanned.append(os.path.relpath(path, tmp_path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)
    tree = SourceTree(tmp_path, ignore=ignoring("node_modules", "build", "!build/out/keep.txt"))
    assert [e.rel for e in tree.walk("")] == ["build", "build/out", "build/out/keep.txt", "src", "src/a.c"]
    assert not any(p.startswith("node_modules") for p in scanned)
    # with a wildcard exception every excluded directory has to be looked into
    scanned.clear()
    tree = SourceTree(tmp_path, ignore=ignoring("node_modules", "!**/*.txt"))
    list(tree.walk(""))
    assert "node_modules" in scanned


def test_symlinks_resolve_inside_the_context(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    make_tree(
        ctx,
        {
            "etc/passwd": "inside",
            "abs": "->/etc/passwd",
            "up": "->../../../../etc/passwd",
            "dirlink": "->/etc",
            "loop1": "->loop2",
            "loop2": "->loop1",
        },
    )
    (tmp_path / "secret").write_text("outside")
    (ctx / "to-secret").symlink_to(tmp_path / "secret")
    tree = SourceTree(ctx)
    assert tree.entry("abs").rel == "etc/passwd"
    assert tree.entry("up").rel == "etc/passwd"
    assert tree.entry("dirlink/passwd").rel == "etc/passwd"
    assert tree.entry("../../../etc/passwd").rel == "etc/passwd"
    assert tree.entry("/abs", follow=False).is_symlink
    # an absolute target outside is re-rooted in the context, where it does not exist
    with pytest.raises(NotFound):
        tree.entry("to-secret")
    with pytest.raises(SourceError, match="too many levels of symbolic links"):
        tree.entry("loop1")


def test_symlink_to_an_ignored_file_finds_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"secret/key": "k", "link": "->secret", "filelink": "->secret/key"})
    tree = SourceTree(tmp_path, ignore=ignoring("secret"))
    for path in ("link/key", "filelink", "secret/key"):
        with pytest.raises(NotFound):
            tree.entry(path)


def test_glob_follows_buildkit_resolve_wildcards(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "fileA": "a",
            "fileB": "b",
            "dirA/fileAa": "",
            "dirB/fileBa": "",
            "dirC/x/fileA": "",
            "arr[0].txt": "",
            "a*b": "",
            "linkdir": "->dirA",
            "skip.log": "",
        },
    )
    tree = SourceTree(tmp_path, ignore=ignoring("*.log"))
    assert tree.glob("file*") == ["fileA", "fileB"]
    assert tree.glob("/dir[AB]") == ["dirA", "dirB"]  # a matched directory is not searched
    assert tree.glob("*/file*") == ["dirA/fileAa", "dirB/fileBa"]
    assert tree.glob("arr[[]0].txt") == ["arr[0].txt"]
    assert tree.glob("a\\*b*") == ["a*b"]  # an escaped star is literal
    assert tree.glob("a\\*b") == ["a\\*b"]  # no wildcard: the path as written, as BuildKit
    assert tree.glob("linkdir/*") == ["dirA/fileAa"]  # the part before the wildcard is resolved
    assert tree.glob("nomatch*") == []
    assert tree.glob("*.log") == []  # ignored files do not exist
    assert tree.glob("../../file?") == ["fileA", "fileB"]
    with pytest.raises(SourceError, match="syntax error in pattern"):
        tree.glob("file[")


def test_owner_is_reset_for_the_context_and_kept_for_stages(tmp_path: Path) -> None:
    make_tree(tmp_path, {"f": "x"})
    st = os.lstat(tmp_path / "f")
    assert SourceTree(tmp_path, reset_owner=True).owner(st) == (0, 0)
    assert SourceTree(tmp_path).owner(st) == (st.st_uid, st.st_gid)
