"""COPY/ADD file semantics beyond the Charliecloud oracle: ownership, modes, times, selection
flags, heredocs, archives, and every way a source or destination could try to escape."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.archive import ArchiveError, is_archive
from builder.chmod import parse_chmod
from builder.contenthash import Hasher
from builder.context import SourceTree
from builder.copy import CopyError, CopyOptions, dest_path
from builder.sources import CopySpec, SourceSpecError, apply_sources, digest_sources, resolve_sources
from builder.users import Identity
from pybuild.errors import NotFound
from tests.builder.conftest import BODY
from tests.builder.trees import ignoring, make_tree

pytestmark = pytest.mark.root  # ownership, devices and chroot-like checks need root


def copy(ctx: Path, root: Path, *args: str, workdir: str = "/", opts: CopyOptions | None = None, **spec: object) -> None:
    *sources, dest = args
    tree = SourceTree(ctx, reset_owner=True, ignore=spec.pop("ignore", None))  # type: ignore[arg-type]
    command = str(spec.pop("command", "COPY"))
    s = CopySpec(command, tuple(sources), dest, workdir=workdir, **spec)  # type: ignore[arg-type]
    sources = resolve_sources(tree, s, download_dir=root.parent / "downloads")
    apply_sources(sources, s, root, opts or CopyOptions(), scratch_dir=root.parent)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    make_tree(c, {"a.txt": "A", "b.txt": "B", "run.sh": "#!/bin/sh", "dir/x": "X", "dir/sub/y": "Y", "dir/l": "->x"})
    os.chmod(c / "run.sh", 0o755)
    os.chown(c / "a.txt", 1234, 1234)
    return c


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return r


@pytest.mark.parametrize(
    ("dest", "workdir", "expected"),
    [
        ("x", "/app", ("/app/x", False)),
        ("x/", "/app", ("/app/x", True)),
        (".", "/app", ("/app", True)),
        ("./", "/", ("/", True)),
        ("/abs/../y", "/app", ("/y", False)),
        ("../../../etc", "/app", ("/etc", False)),
        ("sub/.", "/w", ("/w/sub", True)),
    ],
)
def test_destination_is_relative_to_workdir_and_clamped(dest: str, workdir: str, expected: tuple[str, bool]) -> None:
    assert dest_path(dest, workdir) == expected


def test_default_ownership_is_root_and_modes_are_kept(ctx: Path, root: Path) -> None:
    copy(ctx, root, "a.txt", "run.sh", "/app/")
    for name, mode in (("a.txt", 0o644), ("run.sh", 0o755)):
        st = (root / "app" / name).lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, mode)
    st = (root / "app").lstat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)


def test_chown_chmod_and_epoch_apply_to_files_dirs_and_created_parents(ctx: Path, root: Path) -> None:
    opts = CopyOptions(chown=Identity(1000, 1001), chmod=parse_chmod("u=rw,go=r,+X"), mtime=1_700_000_000)
    copy(ctx, root, "dir", "/deep/new/dir", opts=opts)
    for rel in ("deep", "deep/new", "deep/new/dir"):
        st = (root / rel).lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1000, 1001, 0o755, 1_700_000_000), rel
    for rel, mode in (("x", 0o644), ("sub", 0o755), ("sub/y", 0o644)):
        st = (root / "deep/new/dir" / rel).lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (1000, 1001, mode, 1_700_000_000), rel
    link = root / "deep/new/dir/l"
    assert os.readlink(link) == "x" and link.lstat().st_uid == 1000  # nested symlink copied as a link


def test_source_times_are_kept_without_an_epoch(ctx: Path, root: Path) -> None:
    os.utime(ctx / "a.txt", (1_000_000, 1_000_000))
    copy(ctx, root, "a.txt", "/a")
    assert (root / "a").stat().st_mtime == 1_000_000


def test_copy_carries_the_xattrs_a_layer_keeps_and_no_overlay_ones(ctx: Path, root: Path) -> None:
    os.setxattr(ctx / "a.txt", "user.note", b"kept")
    os.setxattr(ctx / "a.txt", "user.overlay.opaque", b"y")  # overlay bookkeeping, never in a layer
    copy(ctx, root, "a.txt", "/a")
    assert os.listxattr(root / "a") == ["user.note"] and os.getxattr(root / "a", "user.note") == b"kept"


def test_stage_sources_keep_their_ownership(ctx: Path, root: Path) -> None:
    tree = SourceTree(ctx, name="stage build")  # no reset: COPY --from keeps owners
    spec = CopySpec("COPY", ("a.txt",), "/a")
    apply_sources(resolve_sources(tree, spec), spec, root, CopyOptions())
    assert (root / "a").stat().st_uid == 1234


def test_file_never_replaces_a_directory_nor_a_directory_a_file(ctx: Path, root: Path) -> None:
    (root / "file").write_text("")
    (root / "dir/x").mkdir(parents=True)
    with pytest.raises(CopyError, match="non-directory"):
        copy(ctx, root, "dir", "/file")
    with pytest.raises(CopyError, match="cannot replace directory x"):
        copy(ctx, root, "dir", "/dir")


def test_several_files_need_a_directory_destination(ctx: Path, root: Path) -> None:
    with pytest.raises(CopyError, match="destination must be a directory and end with a /"):
        copy(ctx, root, "a.txt", "b.txt", "/out")
    with pytest.raises(CopyError, match="end with a /"):
        copy(ctx, root, "*.txt", "/out")
    (root / "exists").mkdir()
    copy(ctx, root, "a.txt", "b.txt", "/exists")  # an existing directory is fine (BuildKit)
    assert sorted(os.listdir(root / "exists")) == ["a.txt", "b.txt"]
    copy(ctx, root, "*.txt", "/single/")
    copy(ctx, root, "a*", "/one")  # a wildcard matching one file may name the file
    assert (root / "one").read_text() == "A"


def test_missing_source_fails_but_an_empty_wildcard_copies_nothing(ctx: Path, root: Path) -> None:
    with pytest.raises(NotFound, match='"nothere": not found'):
        copy(ctx, root, "nothere", "/x")
    copy(ctx, root, "nomatch*", "/created-only-if-something-matches/")
    assert not (root / "created-only-if-something-matches").exists()


@pytest.mark.parametrize(
    "source", ["../../../etc/hostname", "/../../etc/hostname", "dir/../../../etc/hostname"]
)
def test_sources_cannot_leave_the_context(ctx: Path, root: Path, source: str) -> None:
    with pytest.raises(NotFound):
        copy(ctx, root, source, "/stolen")
    assert not (root / "stolen").exists()


def test_context_symlinks_cannot_point_outside(ctx: Path, root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host secret")
    (ctx / "abs").symlink_to(tmp_path / "secret")
    (ctx / "rel").symlink_to("../secret")
    for link in ("abs", "rel"):
        with pytest.raises(NotFound):
            copy(ctx, root, link, f"/{link}")
    # a symlink inside a copied directory is copied as a link, never read through
    (ctx / "dir/out").symlink_to(tmp_path / "secret")
    copy(ctx, root, "dir", "/d")
    assert os.readlink(root / "d/out") == str(tmp_path / "secret")


def test_destination_symlinks_stay_inside_the_root(ctx: Path, root: Path, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()
    (root / "link-abs").symlink_to(host_dir)  # absolute: means <root>/<host_dir> in the image
    (root / "link-up").symlink_to("../../../../..")
    copy(ctx, root, "a.txt", "/link-abs/")
    copy(ctx, root, "b.txt", "/link-up/b.txt")
    copy(ctx, root, "dir", "/link-up/tmp/")
    assert list(host_dir.iterdir()) == []
    assert (root / str(host_dir).lstrip("/") / "a.txt").read_text() == "A"
    assert (root / "b.txt").read_text() == "B"
    assert (root / "tmp/x").read_text() == "X"


def test_nested_destination_symlinks_are_replaced_not_followed(ctx: Path, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep")
    (root / "d").mkdir()
    (root / "d/x").symlink_to(outside)
    copy(ctx, root, "dir", "/d")
    assert outside.read_text() == "keep"
    assert (root / "d/x").read_text() == "X" and not (root / "d/x").is_symlink()


def test_dockerignored_files_are_not_copied(ctx: Path, root: Path) -> None:
    copy(ctx, root, ".", "/all", ignore=ignoring("*.txt", "dir/sub"))
    assert sorted(os.listdir(root / "all")) == ["dir", "run.sh"]
    assert sorted(os.listdir(root / "all/dir")) == ["l", "x"]


def test_exclude_applies_below_each_source_and_to_wildcard_matches(ctx: Path, root: Path) -> None:
    copy(ctx, root, ".", "/e1/", excludes=("*.txt", "dir/sub"))
    assert sorted(os.listdir(root / "e1")) == ["dir", "run.sh"]
    assert sorted(os.listdir(root / "e1/dir")) == ["l", "x"]
    copy(ctx, root, "dir", "/e2/", excludes=("sub",))  # relative to the source
    assert sorted(os.listdir(root / "e2")) == ["l", "x"]
    copy(ctx, root, "*", "/e3/", excludes=("*.txt",))  # the reference's `--exclude=*.txt hom*`
    assert sorted(os.listdir(root / "e3")) == ["l", "run.sh", "sub", "x"]
    copy(ctx, root, "dir", "/e4/", excludes=("**", "!sub/y"))  # exceptions re-include
    assert [str(p.relative_to(root / "e4")) for p in sorted((root / "e4").rglob("*"))] == ["sub", "sub/y"]


def test_parents_keeps_paths_and_pivots(tmp_path: Path, root: Path) -> None:
    ctx = tmp_path / "p"
    make_tree(ctx, {"x/a": "xa", "y/a": "ya", "src/app/main.go": "m", "src/app/README": "r", "src/lib/util.go": "u"})
    copy(ctx, root, "x/a", "y/a", "/p/", parents=True)
    assert (root / "p/x/a").read_text() == "xa" and (root / "p/y/a").read_text() == "ya"
    copy(ctx, root, "src/./app/main.go", "/q/", parents=True)
    assert [str(p.relative_to(root / "q")) for p in sorted((root / "q").rglob("*"))] == ["app", "app/main.go"]
    copy(ctx, root, "src/./**/*.go", "/r/", parents=True)
    assert sorted(str(p.relative_to(root / "r")) for p in (root / "r").rglob("*.go")) == ["app/main.go", "lib/util.go"]
    assert not (root / "r/app/README").exists()
    with pytest.raises(NotFound):
        copy(ctx, root, "src/./app/missing", "/s/", parents=True)


def test_heredoc_sources(ctx: Path, root: Path) -> None:
    copy(ctx, root, "/etc/conf", heredocs=(("CONF", b"a=1\n"),))
    assert (root / "etc/conf").read_bytes() == b"a=1\n"
    assert stat.S_IMODE((root / "etc/conf").stat().st_mode) == 0o644
    copy(ctx, root, "/many/", heredocs=(("A", b"a"), ("B", b"b")), opts=CopyOptions(chmod=parse_chmod("0600")))
    assert sorted(os.listdir(root / "many")) == ["A", "B"]
    assert stat.S_IMODE((root / "many/A").stat().st_mode) == 0o600


def test_hardlinks_devices_and_fifos_are_recreated(tmp_path: Path, root: Path) -> None:
    ctx = tmp_path / "special"
    ctx.mkdir()
    (ctx / "one").write_text("same")
    os.link(ctx / "one", ctx / "two")
    os.mkfifo(ctx / "fifo")
    os.mknod(ctx / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    copy(ctx, root, ".", "/s/")
    assert (root / "s/one").stat().st_ino == (root / "s/two").stat().st_ino
    assert stat.S_ISFIFO((root / "s/fifo").lstat().st_mode)
    st = (root / "s/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def _tar(members: dict[str, bytes | None], *, absolute: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(("/" if absolute else "") + name)
            info.uid, info.gid, info.mtime = 7, 8, 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(
    "compress", [lambda b: b, gzip.compress, bz2.compress, lzma.compress], ids=["plain", "gzip", "bzip2", "xz"]
)
def test_add_extracts_local_archives_detected_by_content(ctx: Path, root: Path, compress: object) -> None:
    (ctx / "data.bin").write_bytes(compress(_tar({"pkg": None, "pkg/file": b"content"})))  # type: ignore[operator]
    assert is_archive(ctx / "data.bin")
    (root / "opt/pkg").mkdir(parents=True)
    (root / "opt/pkg/old").write_text("kept")
    copy(ctx, root, "data.bin", "/opt", command="ADD", unpack=True)
    assert (root / "opt/pkg/file").read_text() == "content"
    assert (root / "opt/pkg/old").read_text() == "kept"  # merged like tar -x
    st = (root / "opt/pkg/file").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime) == (7, 8, 0o640, 1_600_000_000)
    assert stat.S_IMODE((root / "opt/pkg").stat().st_mode) == 0o750


def test_add_without_unpack_and_copy_keep_archives_as_files(ctx: Path, root: Path) -> None:
    (ctx / "a.tar").write_bytes(_tar({"f": b"x"}))
    copy(ctx, root, "a.tar", "/c/")
    assert (root / "c/a.tar").is_file()
    copy(ctx, root, "a.tar", "/d/", command="ADD", unpack=False)
    assert (root / "d/a.tar").is_file()
    assert not is_archive(ctx / "a.txt")
    (ctx / "fake.tar.gz").write_bytes(gzip.compress(b"not a tar at all" * 64))
    assert not is_archive(ctx / "fake.tar.gz")
    copy(ctx, root, "fake.tar.gz", "/e/", command="ADD", unpack=True)
    assert (root / "e/fake.tar.gz").is_file()


def test_add_archive_absolute_names_land_under_the_destination(ctx: Path, root: Path) -> None:
    (ctx / "abs.tar").write_bytes(_tar({"etc/evil": b"x"}, absolute=True))
    copy(ctx, root, "abs.tar", "/unpacked", command="ADD", unpack=True)
    assert (root / "unpacked/etc/evil").read_bytes() == b"x"
    assert (root / "etc/passwd").read_text().startswith("root")


def _hostile(name: str, *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if link is not None:
            sym = tarfile.TarInfo("escape")
            sym.type, sym.linkname = tarfile.SYMTYPE, link
            tf.addfile(sym)
        info = tarfile.TarInfo(name)
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (_hostile("../../../../escaped"), "'..' in path"),
        (_hostile("escape/evil", link="/"), "not a directory"),
        (_hostile("escape/evil", link="../../../.."), "not a directory"),
        (_hostile("dir/.wh.victim"), "names starting with .wh."),
    ],
    ids=["dotdot", "through-abs-symlink", "through-rel-symlink", "whiteout"],
)
def test_add_refuses_hostile_archives(ctx: Path, root: Path, tmp_path: Path, archive: bytes, message: str) -> None:
    (ctx / "bad.tar").write_bytes(archive)
    with pytest.raises(ArchiveError, match=message):
        copy(ctx, root, "bad.tar", "/x/", command="ADD", unpack=True)
    assert not (tmp_path / "escaped").exists()
    assert not list(tmp_path.glob("**/evil"))


def test_add_url_downloads_with_0600_and_remote_archives_stay_packed(ctx: Path, root: Path, server: str) -> None:
    copy(ctx, root, f"{server}/files/tool.sh", "/usr/local/bin/", command="ADD")
    tool = root / "usr/local/bin/tool.sh"
    assert tool.read_bytes() == BODY
    st = tool.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o600, 0, 1445412480)
    copy(ctx, root, f"{server}/pkg.tar", "/r/", command="ADD")
    assert (root / "r/pkg.tar").is_file()  # remote archives are not extracted by default
    copy(ctx, root, f"{server}/pkg.tar", "/u/", command="ADD", unpack=True)
    assert (root / "u/inside.txt").read_text() == "inside"
    copy(ctx, root, f"{server}/", "/unnamed/", command="ADD")
    assert (root / "unnamed/__unnamed__").exists()


@pytest.mark.parametrize(
    ("command", "sources", "extra", "message"),
    [
        ("COPY", ("http://example.com/x",), {}, "source can't be a URL for COPY"),
        ("COPY", ("a.txt",), {"checksum": "sha256:" + "0" * 64}, "checksum can't be specified for COPY"),
        ("ADD", ("a.txt",), {"checksum": "sha256:" + "0" * 64}, "checksum requires HTTP"),
        ("ADD", ("http://e/x", "http://e/y"), {"checksum": "sha256:" + "0" * 64}, "multiple sources"),
        ("ADD", ("https://github.com/moby/buildkit.git",), {}, "git sources are not supported"),
        ("COPY", ("git@github.com:moby/buildkit.git",), {}, "can't be a git ref for COPY"),
    ],
)
def test_source_and_flag_combinations_buildkit_refuses(
    ctx: Path, root: Path, command: str, sources: tuple[str, ...], extra: dict[str, str], message: str
) -> None:
    with pytest.raises(SourceSpecError, match=message):
        copy(ctx, root, *sources, "/x/", command=command, **extra)


def test_copy_into_an_empty_layer_root_is_link_semantics(ctx: Path, tmp_path: Path) -> None:
    # COPY --link copies into an empty directory that becomes its own layer: nothing of the
    # image is read, so a symlink in the image at the destination is neither followed nor kept.
    layer = tmp_path / "link-layer"
    layer.mkdir()
    copy(ctx, layer, "a.txt", "/etc/app/")
    assert [str(p.relative_to(layer)) for p in sorted(layer.rglob("*"))] == ["etc", "etc/app", "etc/app/a.txt"]
    assert stat.S_IMODE((layer / "etc").stat().st_mode) == 0o755


def test_source_digests_follow_selection_and_content(ctx: Path, tmp_path: Path) -> None:
    tree = SourceTree(ctx, reset_owner=True)
    hasher = Hasher(tree)

    def digests(*sources: str, **kw: object) -> list[tuple[str, str]]:
        spec = CopySpec("COPY", tuple(sources), "/d/", **kw)  # type: ignore[arg-type]
        return digest_sources(resolve_sources(tree, spec), spec, lambda t: hasher)

    d = digests("dir", "a.txt")
    assert [name for name, _ in d] == ["dir", "a.txt"]
    assert digests("dir", excludes=("sub",)) != digests("dir")
    (ctx / "dir/sub/y").write_text("changed")
    assert digests("dir", excludes=("sub",)) == digests("dir", excludes=("sub",))
    assert digests("dir")[0] != d[0]
    heredoc = digests(heredocs=(("A", b"x"),))
    assert heredoc == [("heredoc:A", "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")]
