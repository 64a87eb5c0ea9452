"""COPY semantics against Charliecloud's oracle: examples__copy__Dockerfile built on its context
must leave exactly the tree in examples__copy__expected.txt (Docker's own results).

The Buildfile's RUN steps run with busybox in a chroot of a scratch root (no sandbox needed:
they only make directories, files and links under /test); its COPY steps go through
`resolve_sources` and `apply_sources`. The final `apk add` and listing steps are replaced by the
listing the oracle was recorded with.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder.context import SourceTree
from builder.copy import CopyOptions
from builder.sources import CopySpec, apply_sources, resolve_sources
from tests.conftest import BUSYBOX, CONFORMANCE

CC = CONFORMANCE / "charliecloud-dockerfiles"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
# The symlinks of Charliecloud's examples/copy context (the shared copy keeps only files).
CONTEXT_LINKS = {
    "symlink-to-fileA": "fileA",
    "symlink-to-fileB-A": "fileB",
    "symlink-to-fileB-B": "fileB",
    "dirCa/symlink-to-dirCb": "dirCb",
    "dirD/symlink-to-fileDa": "fileDa",
    "dirEa/symlink-to-dirEb": "dirEb",
}

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not (CC / "examples__copy__Dockerfile").exists(), reason="conformance data absent"),
    pytest.mark.skipif(not BUSYBOX.exists(), reason="/bin/busybox missing (busybox-static)"),
]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a simple Dockerfile: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1]
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def expected_outputs(text: str) -> list[str]:
    """The three expected outputs (ls tree, file contents, symlink targets) of the oracle."""
    blocks = re.split(r"^### expected output:\n", text, flags=re.M)[1:]
    return [re.split(r"^(?:### |EOF$)", b, maxsplit=1, flags=re.M)[0].rstrip("\n") for b in blocks]


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "context"
    shutil.copytree(CC / "examples__copy__context", ctx, symlinks=True)
    for dirpath, _, _ in os.walk(ctx):
        os.chmod(dirpath, 0o755)
    for name, target in CONTEXT_LINKS.items():
        (ctx / name).symlink_to(target)
    return ctx


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for tool in ("sh", "ls", "cat", "find", "sort"):
        (root / "bin" / tool).symlink_to("busybox")
    return root


def run(root: Path, workdir: str, script: str) -> str:
    proc = subprocess.run(
        [CHROOT, str(root), "/bin/busybox", "sh", "-c", f"cd {workdir} && {script}"],
        capture_output=True,
        text=True,
        env={"PATH": "/bin"},
    )
    assert proc.returncode == 0, f"RUN {script}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def listing(root: Path) -> tuple[str, str]:
    files, links = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = "./" + str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                links.append(f"l: {rel} -> {os.readlink(path)}")
            elif stat.S_ISREG(st.st_mode):
                files.append(f"f: {rel}: {path.read_text().rstrip(chr(10))}")
    return "\n".join(sorted(files)), "\n".join(sorted(links))


def test_copy_matches_docker_on_charliecloud_examples(context: Path, rootfs: Path) -> None:
    tree = SourceTree(context, reset_owner=True)
    workdir = "/"
    for keyword, args in instructions((CC / "examples__copy__Dockerfile").read_text()):
        if keyword == "WORKDIR":
            workdir = args
            (rootfs / args.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "RUN":
            if "apk add" in args:
                break  # from here on the Dockerfile only lists what was built
            run(rootfs, workdir, args)
        elif keyword == "COPY":
            *sources, dest = args.split()
            spec = CopySpec("COPY", tuple(sources), dest, workdir=workdir)
            apply_sources(resolve_sources(tree, spec), spec, rootfs, CopyOptions())
    ls_tree, files, links = expected_outputs((CC / "examples__copy__expected.txt").read_text())
    assert run(rootfs, "/test", "ls -1FR .").rstrip("\n") == ls_tree
    got_files, got_links = listing(rootfs / "test")
    assert got_files == files
    assert got_links == links
    # the merge of dir19 took the source's directory permissions (not o+rwx any more)
    assert stat.S_IMODE((rootfs / "test/dir19/dir19a2").stat().st_mode) & 0o007 != 0o007
