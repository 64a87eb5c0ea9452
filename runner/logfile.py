"""A container's log: what it wrote to stdout and stderr, in order, with times.

Format: a sequence of records, each an 8-byte header `>BxxxI` (stream: 1 stdout, 2 stderr; the
payload length, as Docker's multiplexed attach stream has it) then an 8-byte big-endian
nanosecond timestamp, then the payload. Appending is the only write; a reader stops at a torn
final record (a writer killed mid-record loses at most that record).
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

STDOUT = 1
STDERR = 2
_HEADER = struct.Struct(">BxxxIQ")


@dataclass(frozen=True)
class Record:
    stream: int
    time_ns: int
    data: bytes


class LogWriter:
    """Appends records to a log file (opened O_APPEND, so concurrent writers interleave whole
    records)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes) -> None:
        os.write(self.fd, _HEADER.pack(stream, len(data), time.time_ns()) + data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_records(path: Path, offset: int = 0) -> tuple[list[Record], int]:
    """The complete records from `offset`, and the offset just after the last of them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            blob = f.read()
    except FileNotFoundError:
        return [], offset
    records = []
    pos = 0
    while pos + _HEADER.size <= len(blob):
        stream, size, t = _HEADER.unpack_from(blob, pos)
        end = pos + _HEADER.size + size
        if end > len(blob):
            break
        records.append(Record(stream, t, blob[pos + _HEADER.size : end]))
        pos = end
    return records, offset + pos

