"""Digests and canonical JSON: how the store names content.

Only sha256 is stored. A digest string is `sha256:<64 lowercase hex>`; `hex_of` checks and strips it
(so a hostile digest can never become a path like `../x`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pybuild.errors import StoreError

SHA256 = "sha256"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


def is_digest(text: str) -> bool:
    return bool(_DIGEST_RE.match(text))


def is_hex(text: str) -> bool:
    return bool(_HEX_RE.match(text))


def hex_of(digest: str) -> str:
    """The 64 hex characters of a `sha256:` digest; StoreError for anything else."""
    if not _DIGEST_RE.match(digest):
        raise StoreError(f"unsupported or malformed digest {digest[:80]!r}", hint="only sha256 digests are stored")
    return digest[7:]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short_id(digest: str, n: int = 12) -> str:
    """`sha256:abcdef...` -> `abcdef012345`, as `docker images` shows an id."""
    return digest.split(":", 1)[-1][:n]


def canonical_json(obj: Any) -> bytes:
    """The one serialization of a JSON document we store: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, what: str) -> Any:
    """Parse a stored JSON document; a StoreError naming `what` if it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise StoreError(f"{what}: not valid JSON: {e}") from None
