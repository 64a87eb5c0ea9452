"""What users type for the container commands that the runner interprets: sizes and memory
limits (`-m 64m`), as the docker CLI reads them. Pure functions. (Showing things to people,
`ps` columns and human durations, is the CLI's: pybuild/formatting.py.)"""

from __future__ import annotations

import re

from pybuild.errors import RuntimeError_

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum --memory


def parse_size(text: str) -> int:
    """`512`, `64m`, `1.5g`, `2GiB` -> bytes (binary units, as docker's RAMInBytes)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise RuntimeError_(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_memory(text: str) -> int:
    value = parse_size(text)
    if value < MIN_MEMORY:
        raise RuntimeError_("minimum memory limit allowed is 6MB")
    return value
