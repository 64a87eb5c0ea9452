"""The tar format, both ways, as pure functions over bytes: one entry's header blocks out, one
header block in.

We write PAX (POSIX.1-2001) archives: a ustar header, preceded by a pax extended header only when a
field does not fit (long or non-ASCII names, large sizes or ids, extended attributes). The same
`TarEntry` always encodes to the same bytes, which is what makes layers reproducible.

Reading accepts ustar, pax ('x', and 'g' which is ignored) and GNU long names ('L', 'K'). Every
header is bounded (`MAX_EXTENDED_HEADER`), so a hostile archive cannot make us allocate without
limit; every failure is a `TarFormatError` naming the entry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pybuild.errors import StoreError

BLOCK = 512
# Longer pax or GNU long-name headers are refused: no legitimate entry needs a megabyte of metadata.
MAX_EXTENDED_HEADER = 1 << 20

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_CONTIGUOUS = b"7"  # read as a regular file
_PAX = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
ENTRY_TYPES = frozenset({REGULAR, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO})

XATTR_PREFIX = "SCHILY.xattr."
_OCTAL_LIMITS = {"mode": 8, "uid": 8, "gid": 8, "size": 12, "mtime": 12, "devmajor": 8, "devminor": 8}


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


class TarFormatError(StoreError):
    """An archive that is not a tar we accept (bad checksum, truncated, oversized header, ...)."""


@dataclass(frozen=True)
class TarEntry:
    """One archive member. `name` and `linkname` are raw bytes (names need not be UTF-8);
    directories are written with a trailing slash, which `name` does not carry."""

    name: bytes
    type: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = field(default=())


def padding(size: int) -> int:
    """Zero bytes that follow `size` bytes of member data."""
    return -size % BLOCK


END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


# ---------------------------------------------------------------------------------------- writing


def encode_header(e: TarEntry) -> bytes:
    """The header block(s) for `e`: an optional pax header (with its data) and the ustar block."""
    name = e.name + b"/" if e.type == DIRECTORY else e.name
    pax: list[tuple[bytes, bytes]] = []
    binary = False
    for key, value, width in (("path", name, 100), ("linkpath", e.linkname, 100)):
        if len(value) > width or not value.isascii():
            pax.append((key.encode(), value))
            binary = binary or not _is_utf8(value)
    numbers = {"uid": e.uid, "gid": e.gid, "size": e.size, "mtime": e.mtime}
    for key, value in numbers.items():
        if value >= 8 ** (_OCTAL_LIMITS[key] - 1):
            pax.append((key.encode(), str(value).encode()))
    for key, value in e.xattrs:
        pax.append(((XATTR_PREFIX + key).encode(), value))
        binary = binary or not _is_utf8(value)
    out = b""
    if pax:
        if binary:
            pax.insert(0, (b"hdrcharset", b"BINARY"))
        data = b"".join(_pax_record(k, v) for k, v in pax)
        out = _ustar(b"././@PaxHeader", _PAX, 0o644, 0, 0, len(data), 0, b"", 0, 0)
        out += data + b"\0" * padding(len(data))
    return out + _ustar(name, e.type, e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname, e.devmajor, e.devminor)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


# name, numbers (mode uid gid size mtime), chksum, type, linkname, magic+version, uname, gname,
# devmajor devminor, prefix, pad: 512 bytes
_USTAR = struct.Struct("100s48s8sc100s8s32s32s16s155s12s")
_LIMITS = (8**7, 8**7, 8**7, 8**11, 8**11)


def _ustar(
    name: bytes, type_: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
    linkname: bytes, devmajor: int, devminor: int,
) -> bytes:
    numbers = [mode & 0o7777, uid, gid, size, max(mtime, 0)]
    for i, limit in enumerate(_LIMITS):
        if numbers[i] >= limit:
            numbers[i] = 0  # the pax header carries it
    devs = [d if d < 8**7 else 0 for d in (devmajor, devminor)]
    h = _USTAR.pack(
        name[:100], b"%07o\0%07o\0%07o\0%011o\0%011o\0" % tuple(numbers), b"        ", type_, linkname[:100],
        b"ustar\x0000", b"", b"",  # uname and gname stay empty: ids are numeric
        b"%07o\0%07o\0" % tuple(devs), b"", b"",
    )
    return h[:148] + b"%06o\0 " % sum(h) + h[156:]


# ---------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RawHeader:
    """One decoded header block, before extended headers are applied."""

    name: bytes
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: bytes
    devmajor: int
    devminor: int


def decode_header(block: bytes, offset: int) -> RawHeader | None:
    """Decode a 512-byte header; None for an all-zero block (end of archive).

    `offset` (of the block in the uncompressed stream) only goes into error messages.
    """
    if block.count(0) == BLOCK:
        return None
    stored = _number(block[148:156], "checksum", offset)
    actual = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if stored != actual:
        raise TarFormatError(f"tar header at byte {offset}: bad checksum (not a tar archive, or damaged)")
    name = _cstring(block[0:100])
    if block[257:262] == b"ustar":
        prefix = _cstring(block[345:500])
        if prefix:
            name = prefix + b"/" + name
    type_ = block[156:157]
    if type_ in (b"\0", _CONTIGUOUS):
        type_ = REGULAR
    return RawHeader(
        name=name,
        type=type_,
        mode=_number(block[100:108], "mode", offset),
        uid=_number(block[108:116], "uid", offset),
        gid=_number(block[116:124], "gid", offset),
        size=_number(block[124:136], "size", offset),
        mtime=_number(block[136:148], "mtime", offset),
        linkname=_cstring(block[157:257]),
        devmajor=_number(block[329:337], "devmajor", offset),
        devminor=_number(block[337:345], "devminor", offset),
    )


def _cstring(b: bytes) -> bytes:
    end = b.find(b"\0")
    return b if end < 0 else b[:end]


def _number(field_: bytes, what: str, offset: int) -> int:
    if field_[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(field_[1:], "big")
        return -((1 << (8 * (len(field_) - 1))) - value) if field_[:1] == b"\xff" else value
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"tar header at byte {offset}: invalid {what} field {text!r}") from None


def parse_pax(data: bytes, offset: int) -> dict[str, bytes]:
    """The records of a pax extended header, keys decoded, values kept as bytes."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # padding some writers leave inside the declared size
        space = data.find(b" ", pos)
        if space < 0:
            raise TarFormatError(f"pax header at byte {offset}: malformed record")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError(f"pax header at byte {offset}: malformed record length") from None
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise TarFormatError(f"pax header at byte {offset}: record overruns the header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarFormatError(f"pax header at byte {offset}: record without '='")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def pax_int(records: dict[str, bytes], key: str, default: int, offset: int) -> int:
    """An integer pax field (mtime may carry a fraction, which is dropped)."""
    raw = records.get(key)
    if raw is None:
        return default
    try:
        return int(float(raw)) if key == "mtime" else int(raw)
    except (ValueError, OverflowError):
        raise TarFormatError(f"pax header at byte {offset}: invalid {key} {raw[:40]!r}") from None


class TarReader:
    """Entries of a tar stream, read in one pass with bounded memory.

    Iterate for `TarEntry` values (extended headers applied, names without a trailing slash); after
    each, `data()` yields that member's contents in chunks (what is not read is skipped). The
    reader stops at the end-of-archive marker and leaves the rest of the stream unread.
    """

    def __init__(self, stream: _Readable, *, chunk: int = 1 << 20) -> None:
        self._f = stream
        self._chunk = chunk
        self.offset = 0
        self._remaining = 0  # data bytes of the current member not yet read
        self._pad = 0

    def _read(self, n: int) -> bytes:
        parts = []
        want = n
        while want:
            b = self._f.read(want)
            if not b:
                raise TarFormatError(f"tar stream truncated at byte {self.offset + n - want}")
            parts.append(b)
            want -= len(b)
        self.offset += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _skip_rest(self) -> None:
        for _ in self.data():
            pass
        if self._pad:
            self._read(self._pad)
            self._pad = 0

    def data(self) -> Iterator[bytes]:
        while self._remaining:
            b = self._read(min(self._remaining, self._chunk))
            self._remaining -= len(b)
            yield b

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        longname: bytes | None = None
        longlink: bytes | None = None
        while True:
            self._skip_rest()
            at = self.offset
            h = decode_header(self._read(BLOCK), at)
            if h is None:
                return
            if h.size < 0:
                raise TarFormatError(f"tar header at byte {at}: negative size")
            if h.type in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                if h.size > MAX_EXTENDED_HEADER:
                    raise TarFormatError(f"tar header at byte {at}: extended header of {h.size} bytes is too large")
                data = self._read(h.size)
                self._read(padding(h.size))
                if h.type == _PAX:
                    pax.update(parse_pax(data, at))
                elif h.type == _GNU_LONGNAME:
                    longname = _cstring(data)
                elif h.type == _GNU_LONGLINK:
                    longlink = _cstring(data)
                continue  # global headers carry nothing we apply
            name = pax.get("path", longname if longname is not None else h.name)
            linkname = pax.get("linkpath", longlink if longlink is not None else h.linkname)
            xattrs = tuple(sorted((k[len(XATTR_PREFIX):], v) for k, v in pax.items() if k.startswith(XATTR_PREFIX)))
            size = pax_int(pax, "size", h.size, at)
            entry = TarEntry(
                name=name.rstrip(b"/") if h.type == DIRECTORY else name,
                type=h.type,
                mode=h.mode,
                uid=pax_int(pax, "uid", h.uid, at),
                gid=pax_int(pax, "gid", h.gid, at),
                size=size if h.type in (REGULAR, _CONTIGUOUS) else 0,
                mtime=pax_int(pax, "mtime", h.mtime, at),
                linkname=linkname,
                devmajor=h.devmajor,
                devminor=h.devminor,
                xattrs=xattrs,
            )
            if entry.type not in ENTRY_TYPES:
                raise TarFormatError(f"{show_name(name)}: unsupported tar entry type {h.type!r}")
            if size < 0:
                raise TarFormatError(f"{show_name(name)}: negative size")
            # hardlinks and others may still declare data; it is skipped
            self._remaining = entry.size if entry.type == REGULAR else size
            self._pad = padding(self._remaining)
            pax, longname, longlink = {}, None, None
            yield entry


def show_name(name: bytes) -> str:
    """A name for error messages: printable, and never a whole megabyte."""
    text = name.decode("utf-8", "backslashreplace")
    return text if len(text) <= 200 else text[:200] + "..."

