"""Digests and canonical JSON: how the store names content.

Only sha256 is stored. A digest string is `sha256:<64 lowercase hex>`; `hex_of` checks and strips it
(so a hostile digest can never become a path like `../x`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pybuild.errors import DigestMismatch, StoreError

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


class SizeMismatch(DigestMismatch):
    """Content longer or shorter than its descriptor's size."""

    def __init__(self, what: str, *, expected: int, got: str, hint: str | None = None) -> None:
        super().__init__(what, expected=f"{expected} bytes", got=got, hint=hint)
        self.message = f"{what}: size mismatch: its descriptor says {expected} bytes, got {got}"


def hasher_for(digest: str, what: str) -> Any:
    """A fresh hashlib object for `digest`'s algorithm: sha256, or sha512 (which archives and
    registries may use, though the store keeps sha256 only); StoreError for anything else."""
    algo, sep, hexpart = digest.partition(":")
    lengths = {"sha256": 64, "sha512": 128}
    if not sep or algo not in lengths or len(hexpart) != lengths[algo] or not all(c in "0123456789abcdef" for c in hexpart):
        raise StoreError(f"{what}: unsupported or malformed digest {digest[:80]!r}")
    return hashlib.new(algo)


def check_bytes(data: bytes, *, digest: str, size: int | None, what: str) -> bytes:
    """`data` if it has `digest` (and `size`, when given); DigestMismatch/SizeMismatch otherwise."""
    if size is not None and len(data) != size:
        raise SizeMismatch(what, expected=size, got=f"{len(data)} bytes")
    h = hasher_for(digest, what)
    h.update(data)
    got = f"{digest.split(':')[0]}:{h.hexdigest()}"
    if got != digest:
        raise DigestMismatch(what, expected=digest, got=got)
    return data


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


_NOUNS: dict[type, str] = {dict: "a JSON object", list: "a list", str: "a string", int: "a number"}


def expect(value: Any, kind: type, what: str) -> Any:
    """`value` if it is a `kind` (a bool is no number); StoreError naming `what` otherwise. For
    the fields of documents read from the store or from outside."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise StoreError(f"{what} is missing" if value is None else f"{what} is not {_NOUNS.get(kind, kind.__name__)}")


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON document that must be an object (a manifest, a config, an index)."""
    return expect(load_json(data, what), dict, what)  # type: ignore[no-any-return]
