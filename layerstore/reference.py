"""Image references, normalised as Docker does (distribution/reference `ParseNormalizedNamed`).

`busybox` is `docker.io/library/busybox:latest`; `localhost:5000/x` keeps its registry;
`app@sha256:...` pins a digest. `familiar` gives back the short form users type and see
(`busybox:latest`, `app:1`), which is also the name written in the store's index.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybuild.errors import ParseError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"

# distribution/reference/regexp.go
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ID_RE = re.compile(r"^[a-f0-9]{64}$")
NAME_TOTAL_MAX = 255


@dataclass(frozen=True)
class Reference:
    """A normalised image reference. `tag` is None only when a digest pins the image."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`docker.io/library/busybox`"""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """`busybox`, `user/app`, `localhost:5000/app`: the repository as users write it."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        return self.repository

    def __str__(self) -> str:
        return self.repository + self._suffix()

    @property
    def familiar(self) -> str:
        """`busybox:latest`, `app:1`, `app@sha256:...`"""
        return self.familiar_repository + self._suffix()

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag else ""
        return s + (f"@{self.digest}" if self.digest else "")

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise `text` as Docker does; `default_tag` adds `:latest` when neither a tag
    nor a digest is given. Raises ParseError naming the reference."""
    if not text:
        raise ParseError("invalid reference format: repository name must not be empty", file=text or "<reference>")
    remainder = text
    digest = None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST_RE.match(digest) or (digest.startswith("sha256:") and not _SHA256_RE.match(digest)):
            raise _invalid(text, "invalid digest")
    tag = None
    last = remainder.rsplit("/", 1)[-1]
    if ":" in last:
        remainder, tag = remainder.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise _invalid(text, "invalid tag")
    domain, path = _split_domain(remainder)
    if path != path.lower() and _PATH_RE.match(path.lower()):
        raise _invalid(text, "repository name must be lowercase")
    if not _PATH_RE.match(path) or not _DOMAIN_RE.match(domain):
        raise _invalid(text, "invalid reference format")
    if len(domain) + 1 + len(path) > NAME_TOTAL_MAX:
        raise _invalid(text, "repository name must not be more than 255 characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path


def _invalid(text: str, why: str) -> ParseError:
    return ParseError(f"{why}", file=text)


def looks_like_image_id(text: str) -> bool:
    """A full 64-hex id or `sha256:<hex>` (short ids are resolved by the store, not here)."""
    return bool(_ID_RE.match(text) or _SHA256_RE.match(text))
