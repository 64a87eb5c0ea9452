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
import zlib
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
    return encode_fields(e.name, e.type, e.mode, e.uid, e.gid, e.size, e.mtime, e.linkname, e.devmajor, e.devminor, e.xattrs)


def encode_fields(
    name: bytes, type_: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, size: int = 0, mtime: int = 0,
    linkname: bytes = b"", devmajor: int = 0, devminor: int = 0, xattrs: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """`encode_header` of the entry with these fields, without building a TarEntry (committing a
    tree encodes one header per file, and most need no pax header: that case is the short path)."""
    if type_ == DIRECTORY:
        name += b"/"
    if (
        not xattrs and len(name) <= 100 and len(linkname) <= 100 and name.isascii() and linkname.isascii()
        and uid < _ID_LIMIT and gid < _ID_LIMIT and size < _NUMBER_LIMIT and 0 <= mtime < _NUMBER_LIMIT
    ):
        return _ustar(name, type_, mode, uid, gid, size, mtime, linkname, devmajor, devminor)
    pax: list[tuple[bytes, bytes]] = []
    binary = False
    for key, value in ((b"path", name), (b"linkpath", linkname)):
        if len(value) > 100 or not value.isascii():
            pax.append((key, value))
            binary = binary or not _is_utf8(value)
    for nkey, number, limit in ((b"uid", uid, _ID_LIMIT), (b"gid", gid, _ID_LIMIT), (b"size", size, _NUMBER_LIMIT), (b"mtime", mtime, _NUMBER_LIMIT)):
        if number >= limit:
            pax.append((nkey, str(number).encode()))
    for xkey, xvalue in xattrs:
        pax.append(((XATTR_PREFIX + xkey).encode(), xvalue))
        binary = binary or not _is_utf8(xvalue)
    out = b""
    if pax:
        if binary:
            pax.insert(0, (b"hdrcharset", b"BINARY"))
        data = b"".join(_pax_record(k, v) for k, v in pax)
        out = _ustar(b"././@PaxHeader", _PAX, 0o644, 0, 0, len(data), 0, b"", 0, 0)
        out += data + b"\0" * padding(len(data))
    return out + _ustar(name, type_, mode, uid, gid, size, mtime, linkname, devmajor, devminor)


def regular_header(
    name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, xattrs: tuple[tuple[str, bytes], ...] = (),
) -> bytes:
    """`encode_fields(name, REGULAR, mode, uid, gid, size, mtime, xattrs=xattrs)`: the same bytes, for
    the header a commit writes most, with a third less work (the block's second half is fixed)."""
    if (
        xattrs or len(name) > 100 or not name.isascii() or uid >= _ID_LIMIT or gid >= _ID_LIMIT
        or size >= _NUMBER_LIMIT or not 0 <= mtime < _NUMBER_LIMIT
    ):
        return encode_fields(name, REGULAR, mode, uid, gid, size, mtime, b"", 0, 0, xattrs)
    head = _HEAD.pack(name, b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode & 0o7777, uid, gid, size, mtime))
    return b"%s%06o\0 %s" % (head, _byte_sum(head) + _REGULAR_REST_SUM, _REGULAR_REST)


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


# A ustar block is name and numbers (mode uid gid size mtime), the checksum, then type, linkname,
# magic+version, uname, gname, devmajor devminor, prefix and padding: 512 bytes.
_HEAD = struct.Struct("100s48s")
_REST = struct.Struct("c100s8s32s32s16s155s12s")
_ID_LIMIT = 8**7  # an octal field of 8 (mode, uid, gid, devmajor, devminor)
_NUMBER_LIMIT = 8**11  # an octal field of 12 (size, mtime)
_MAGIC = b"ustar\x0000"
_CHECKSUM_SPACES = 8 * 0x20  # the checksum is summed as if its own field were 8 spaces


_REGULAR_REST = _REST.pack(REGULAR, b"", _MAGIC, b"", b"", b"%07o\0%07o\0" % (0, 0), b"", b"")
_REGULAR_REST_SUM = sum(_REGULAR_REST) + _CHECKSUM_SPACES


def _ustar(
    name: bytes, type_: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
    linkname: bytes, devmajor: int, devminor: int,
) -> bytes:
    """One ustar block; a number too large for its field is written as 0 (the pax header carries it)."""
    head = _HEAD.pack(
        name[:100],
        b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (
            mode & 0o7777, uid if uid < _ID_LIMIT else 0, gid if gid < _ID_LIMIT else 0,
            size if size < _NUMBER_LIMIT else 0, mtime if 0 <= mtime < _NUMBER_LIMIT else 0,
        ),
    )
    rest = _REST.pack(
        type_, linkname[:100], _MAGIC, b"", b"",  # uname and gname stay empty: ids are numeric
        b"%07o\0%07o\0" % (devmajor if devmajor < _ID_LIMIT else 0, devminor if devminor < _ID_LIMIT else 0), b"", b"",
    )
    return b"%s%06o\0 %s" % (head, _byte_sum(head) + _CHECKSUM_SPACES + _byte_sum(rest), rest)


def _byte_sum(data: bytes | memoryview) -> int:
    """sum(data), in C: adler32's low half is 1 + the byte sum modulo 65521, and neither part of a
    ustar block reaches that (the head is 148 bytes; of the rest only the 100-byte linkname is free
    text, the other fields are a type byte, the magic and octal digits)."""
    return (zlib.adler32(data) & 0xFFFF) - 1


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
    fields = _decode(block, offset)
    return None if fields is None else RawHeader(*fields)


_ZERO_BLOCK = bytes(BLOCK)
# name mode uid gid size mtime chksum type linkname magic version uname gname devmajor devminor prefix pad
_FIELDS = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12s")


def _decode(block: bytes, offset: int) -> tuple[bytes, bytes, int, int, int, int, int, bytes, int, int] | None:
    """`decode_header`'s fields as a tuple in RawHeader's order (the reader's path: no object)."""
    if block == _ZERO_BLOCK:
        return None
    name, mode, uid, gid, size, mtime, chksum, type_, linkname, magic, _, _, _, major, minor, prefix, _ = _FIELDS.unpack(block)
    view = memoryview(block)
    # three parts, each short enough for _byte_sum (at most 256 bytes)
    actual = _byte_sum(view[:148]) + _CHECKSUM_SPACES + _byte_sum(view[156:412]) + _byte_sum(view[412:])
    try:
        stored = _number(chksum, "checksum", offset)
    except TarFormatError:
        stored = -1  # not even a number: no tar header (and no bytes of it in the message)
    if stored != actual:
        raise TarFormatError(f"tar header at byte {offset}: bad checksum (not a tar archive, or damaged)")
    name = _cstring(name)
    if magic[:5] == b"ustar":
        prefix = _cstring(prefix)
        if prefix:
            name = prefix + b"/" + name
    if type_ in (b"\0", _CONTIGUOUS):
        type_ = REGULAR
    return (
        name, type_, _number(mode, "mode", offset), _number(uid, "uid", offset), _number(gid, "gid", offset),
        _number(size, "size", offset), _number(mtime, "mtime", offset), _cstring(linkname),
        _number(major, "devmajor", offset), _number(minor, "devminor", offset),
    )


def _cstring(b: bytes) -> bytes:
    end = b.find(b"\0")
    return b if end < 0 else b[:end]


def _number(field_: bytes, what: str, offset: int) -> int:
    try:
        return int(field_.rstrip(b"\0"), 8)  # the usual form: octal digits, then NULs
    except ValueError:
        pass
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
    reader stops at the end-of-archive marker and leaves the rest of the stream unread, unless
    `read_ahead`: then it reads the stream in `chunk`-sized pieces and serves headers and small
    members from them (one read call per megabyte rather than three per entry), and may have
    consumed up to `chunk` bytes past the end-of-archive marker; for callers that drain the
    stream afterwards anyway.
    """

    def __init__(self, stream: _Readable, *, chunk: int = 1 << 20, read_ahead: bool = False) -> None:
        self._f = stream
        self._chunk = chunk
        self._read_ahead = read_ahead
        self._buf = b""  # read ahead, not yet served: self._buf[self._pos:]
        self._pos = 0
        self.offset = 0
        self._remaining = 0  # data bytes of the current member not yet read
        self._pad = 0

    def _read(self, n: int) -> bytes:
        buffered = len(self._buf) - self._pos
        if buffered >= n:
            b = self._buf[self._pos : self._pos + n]
            self._pos += n
            self.offset += n
            return b
        parts = [self._buf[self._pos :]] if buffered else []
        self._buf, self._pos = b"", 0
        want = n - buffered
        while want:
            if self._read_ahead and want < self._chunk:
                more = self._f.read(self._chunk)
                if len(more) > want:
                    self._buf, self._pos = more, want
                    parts.append(more[:want])
                    break
            else:
                more = self._f.read(want)
            if not more:
                at = self.offset + n - want
                if at < BLOCK:
                    raise TarFormatError(f"not a tar archive (it ends after {at} bytes)")
                raise TarFormatError(f"tar stream truncated at byte {at}")
            parts.append(more)
            want -= len(more)
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
            # what was read ahead first, then whole chunks straight from the stream
            buffered = len(self._buf) - self._pos
            b = self._read(min(self._remaining, self._chunk, buffered or self._chunk))
            self._remaining -= len(b)
            yield b

    def __iter__(self) -> Iterator[TarEntry]:
        pax: dict[str, bytes] = {}
        longname: bytes | None = None
        longlink: bytes | None = None
        while True:
            self._skip_rest()
            at = self.offset
            h = _decode(self._read(BLOCK), at)
            if h is None:
                return
            name, type_, mode, uid, gid, size, mtime, linkname, devmajor, devminor = h
            if size < 0:
                raise TarFormatError(f"tar header at byte {at}: negative size")
            if type_ in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                if size > MAX_EXTENDED_HEADER:
                    raise TarFormatError(f"tar header at byte {at}: extended header of {size} bytes is too large")
                data = self._read(size)
                self._read(padding(size))
                if type_ == _PAX:
                    pax.update(parse_pax(data, at))
                elif type_ == _GNU_LONGNAME:
                    longname = _cstring(data)
                elif type_ == _GNU_LONGLINK:
                    longlink = _cstring(data)
                continue  # global headers carry nothing we apply
            xattrs: tuple[tuple[str, bytes], ...] = ()
            if pax or longname is not None or longlink is not None:
                name = pax.get("path", longname if longname is not None else name)
                linkname = pax.get("linkpath", longlink if longlink is not None else linkname)
                xattrs = tuple(sorted((k[len(XATTR_PREFIX):], v) for k, v in pax.items() if k.startswith(XATTR_PREFIX)))
                size = pax_int(pax, "size", size, at)
                uid = pax_int(pax, "uid", uid, at)
                gid = pax_int(pax, "gid", gid, at)
                mtime = pax_int(pax, "mtime", mtime, at)
            if type_ not in ENTRY_TYPES:
                raise TarFormatError(f"{show_name(name)}: unsupported tar entry type {type_!r}")
            if size < 0:
                raise TarFormatError(f"{show_name(name)}: negative size")
            entry = TarEntry(
                name.rstrip(b"/") if type_ == DIRECTORY else name, type_, mode, uid, gid,
                size if type_ == REGULAR else 0, mtime, linkname, devmajor, devminor, xattrs,
            )
            # hardlinks and others may still declare data; it is skipped
            self._remaining = size
            self._pad = padding(size)
            pax, longname, longlink = {}, None, None
            yield entry


def show_name(name: bytes) -> str:
    """A name for error messages: printable, and never a whole megabyte."""
    text = name.decode("utf-8", "backslashreplace")
    return text if len(text) <= 200 else text[:200] + "..."

