"""`LayerCheck`, the pull's early refusal, agrees with the extractor: every hostile layer the
extractor refuses it refuses with the same message, and every legal layer (with the tricky but
allowed shapes: a file replacing a symlink, a directory given twice, hardlinks, whiteouts) it
accepts, as the extractor does."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from layerstore.extract import UnsafeLayer, extract
from layerstore.layers import check_layer
from layerstore.tar_format import TarReader
from tests.layerstore.helpers import member, tar_bytes
from tests.layerstore.test_hostile import CASES, hostile_cases

SYM, LNK, DIR, CHR, FIFO = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE

LEGAL = {
    "file-replaces-symlink": [member("s", SYM, link="/etc"), member("s", data=b"inside")],
    "directory-twice": [member("d", DIR, mode=0o755), member("d/f", data=b"x"), member("d", DIR, mode=0o700)],
    "implicit-parents": [member("a/b/c/file", data=b"x"), member("a/b", DIR, mode=0o755)],
    "hardlink-to-earlier-file": [member("a/f", data=b"x"), member("b/h", LNK, link="a/f")],
    "hardlink-replaces-file": [member("f", data=b"x"), member("g", data=b"y"), member("g", LNK, link="f")],
    "whiteouts": [member("a", DIR, mode=0o755), member("a/.wh.gone", data=b""), member("a/.wh..wh..opq", data=b""),
                  member(".wh.top", data=b"")],
    "symlink-to-anywhere": [member("abs", SYM, link="/etc/passwd"), member("up", SYM, link="../../..")],
    "devices-and-fifos": [member("dev/null", CHR, major=1, minor=3), member("run/fifo", FIFO)],
    "root-entry": [member(".", DIR, mode=0o755), member("./f", data=b"x")],
    "aufs-bookkeeping": [member(".wh..wh.plnk", DIR, mode=0o700), member(".wh..wh.plnk/123.4", data=b"x")],
}


@pytest.mark.root
@pytest.mark.parametrize("case", CASES)
def test_a_hostile_layer_is_refused_as_the_extractor_refuses_it(case: str, tmp_path: Path) -> None:
    members, fragment = hostile_cases(tmp_path / "outside")[case]
    data = tar_bytes(members)
    with pytest.raises(UnsafeLayer, match=re.escape(fragment)) as checked:
        check_layer(io.BytesIO(data))
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeLayer) as extracted:
        extract(TarReader(io.BytesIO(data)), target)
    assert checked.value.message == extracted.value.message


@pytest.mark.root
@pytest.mark.parametrize("case", sorted(LEGAL))
def test_a_legal_layer_passes_as_the_extractor_takes_it(case: str, tmp_path: Path) -> None:
    data = tar_bytes(LEGAL[case])
    target = tmp_path / "t"
    target.mkdir()
    done = extract(TarReader(io.BytesIO(data)), target)  # the extractor's word on it first
    assert check_layer(io.BytesIO(data)) == done.entries


@pytest.mark.root
@pytest.mark.parametrize("first", [
    member("x", data=b"file"), member("x", SYM, link="t"), member("x", FIFO), member(".wh.x", data=b""),
], ids=["file", "symlink", "fifo", "whiteout"])
def test_a_non_directory_in_a_path_is_refused_whatever_it_is(first: tuple, tmp_path: Path) -> None:
    data = tar_bytes([first, member("x/y", data=b"z")])
    message = "x/y: path goes through x, which is not a directory"
    with pytest.raises(UnsafeLayer, match=re.escape(message)):
        check_layer(io.BytesIO(data))
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnsafeLayer, match=re.escape(message)):
        extract(TarReader(io.BytesIO(data)), target)
