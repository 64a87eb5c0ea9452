"""The tar format both ways, as pure functions: what we write is what we read back."""

from __future__ import annotations

import io
import tarfile

import pytest

from layerstore.tar_format import (
    BLOCK,
    DIRECTORY,
    END_OF_ARCHIVE,
    MAX_EXTENDED_HEADER,
    REGULAR,
    SYMLINK,
    TarEntry,
    TarFormatError,
    TarReader,
    encode_header,
    padding,
)


def _archive(entries: list[tuple[TarEntry, bytes]]) -> bytes:
    out = b""
    for e, data in entries:
        out += encode_header(e) + data + b"\0" * padding(len(data))
    return out + END_OF_ARCHIVE


@pytest.mark.parametrize(
    "entry",
    [
        TarEntry(name=b"short", type=REGULAR, size=3, mtime=1_700_000_000, mode=0o4755, uid=1000, gid=100),
        TarEntry(name=b"d/" * 80 + b"long-name", type=REGULAR, size=3),
        TarEntry(name=b"caf\xc3\xa9", type=REGULAR, size=3),
        TarEntry(name=b"not-utf8-\xff", type=REGULAR, size=3),
        TarEntry(name=b"big-ids", type=REGULAR, size=3, uid=4_000_000_000, gid=3_000_000_000),
        TarEntry(name=b"x", type=REGULAR, size=3, xattrs=(("security.capability", b"\x01\x00\x00\x02\xff"), ("user.k", b"v"))),
        TarEntry(name=b"link", type=SYMLINK, linkname=b"../" * 60 + b"target"),
    ],
)
def test_entry_round_trips(entry: TarEntry) -> None:
    data = b"abc" if entry.type == REGULAR else b""
    reader = TarReader(io.BytesIO(_archive([(entry, data)])))
    (got,) = list(_with_data(reader))
    assert got == (entry, data)


def _with_data(reader: TarReader) -> list[tuple[TarEntry, bytes]]:
    return [(e, b"".join(reader.data())) for e in reader]


def test_same_entry_gives_same_bytes_and_python_reads_it() -> None:
    entry = TarEntry(name=b"dir", type=DIRECTORY, mode=0o755, mtime=5)
    assert encode_header(entry) == encode_header(TarEntry(name=b"dir", type=DIRECTORY, mode=0o755, mtime=5))
    blob = _archive([(entry, b""), (TarEntry(name=b"dir/f" + b"x" * 150, type=REGULAR, size=2), b"hi")])
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        names = tf.getnames()
        assert names == ["dir", "dir/f" + "x" * 150]
        assert tf.extractfile(names[1]).read() == b"hi"  # type: ignore[union-attr]


def test_reads_gnu_long_names_written_by_tarfile() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("n" * 300)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"z"))
    (got,) = _with_data(TarReader(io.BytesIO(buf.getvalue())))
    assert got[0].name == b"n" * 300 and got[1] == b"z"


def test_bad_checksum_is_a_format_error() -> None:
    blob = bytearray(_archive([(TarEntry(name=b"f", type=REGULAR), b"")]))
    blob[0] ^= 1
    with pytest.raises(TarFormatError, match="bad checksum"):
        list(TarReader(io.BytesIO(bytes(blob))))


def test_truncated_archive_is_a_format_error() -> None:
    blob = _archive([(TarEntry(name=b"f", type=REGULAR, size=3000), b"x" * 3000)])
    with pytest.raises(TarFormatError, match="truncated"):
        _with_data(TarReader(io.BytesIO(blob[:BLOCK + 100])))


def test_oversized_pax_header_is_refused_without_reading_it() -> None:
    header = bytearray(encode_header(TarEntry(name=b"f", type=REGULAR))[:BLOCK])
    header[156:157] = b"x"
    header[124:136] = b"%011o\0" % (MAX_EXTENDED_HEADER + 1)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    with pytest.raises(TarFormatError, match="too large"):
        list(TarReader(io.BytesIO(bytes(header))))


def test_unsupported_entry_type_is_refused() -> None:
    header = bytearray(encode_header(TarEntry(name=b"sparse", type=REGULAR))[:BLOCK])
    header[156:157] = b"S"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    with pytest.raises(TarFormatError, match="unsupported tar entry type"):
        list(TarReader(io.BytesIO(bytes(header) + END_OF_ARCHIVE)))


class _Trickle(io.BytesIO):
    """A stream that returns at most `most` bytes per read, as pipes and decompressors may."""

    def __init__(self, data: bytes, most: int) -> None:
        super().__init__(data)
        self.most = most

    def read(self, n: int | None = -1, /) -> bytes:
        return super().read(self.most if n is None or n < 0 else min(n, self.most))


@pytest.mark.parametrize("chunk", [512, 700, 4096, 1 << 20])
@pytest.mark.parametrize("most", [100, 1 << 20])
def test_reading_ahead_gives_the_same_entries_and_data(chunk: int, most: int) -> None:
    members = [(TarEntry(name=b"d", type=DIRECTORY, mode=0o755), b"")]
    for i, size in enumerate((0, 1, 511, 512, 513, 699, 700, 701, 5000, 70_000)):
        data = bytes((i * 7 + j) % 251 for j in range(size))
        members.append((TarEntry(name=b"d/f%d" % i + b"x" * (i * 40), type=REGULAR, size=size, xattrs=(("user.i", b"%d" % i),) if i % 3 else ()), data))
    blob = _archive(members) + b"trailing bytes after the end of the archive"
    expected = _with_data(TarReader(io.BytesIO(blob)))
    assert expected == members
    assert _with_data(TarReader(_Trickle(blob, most), chunk=chunk, read_ahead=True)) == expected
    # members left unread are skipped alike
    ahead = TarReader(_Trickle(blob, most), chunk=chunk, read_ahead=True)
    assert [e.name for e in ahead] == [e.name for e, _ in members]
