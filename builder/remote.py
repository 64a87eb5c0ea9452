"""ADD of an http(s) URL (F78): download once, verify, name and time the file as BuildKit does.

- The file is named after the last component of the URL path (`__unnamed__` if there is none);
  it is written with mode 0600 and, when the server sends `Last-Modified`, that mtime.
- `--checksum=sha256:<hex>` (or sha384/sha512) is verified before the file is used; a mismatch
  is a DigestMismatch and nothing is copied.
- The cache key uses the content digest, never the time: a server re-sending the same bytes with
  a new Last-Modified is a cache hit.
Remote archives are not extracted unless `ADD --unpack=true` (the caller decides).
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import os
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pybuild import __version__
from pybuild.errors import DigestMismatch, PybuildError

UNNAMED = "__unnamed__"
_ALGORITHMS = ("sha256", "sha384", "sha512")
_CHUNK = 1 << 20


class RemoteError(PybuildError):
    """A URL that could not be fetched."""


def is_url(source: str) -> bool:
    """An http(s) source (a git URL ending in `.git` is not one: it is a git source)."""
    if not source.startswith(("http://", "https://")):
        return False
    return not is_git_url(source)


def is_git_url(source: str) -> bool:
    """A git repository source as BuildKit recognises the common forms (`...*.git[#ref]`,
    `git@host:...`, `git://...`)."""
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    if source.startswith(("http://", "https://")):
        path = urllib.parse.urlsplit(source.split("#", 1)[0]).path
        return path.endswith(".git")
    return False


def url_filename(url: str) -> str:
    """The name ADD gives a downloaded file: the URL path's last component."""
    path = urllib.parse.urlsplit(url).path
    base = posixpath.basename(path.rstrip("/")) if path not in ("", "/") else ""
    if path.endswith("/"):
        base = ""
    return base if base not in ("", ".", "/") else UNNAMED


def parse_checksum(value: str) -> tuple[str, str]:
    """(`sha256`, hex) of a --checksum value; RemoteError if it is not `<alg>:<hex>`."""
    alg, sep, hexpart = value.partition(":")
    if not sep or alg not in _ALGORITHMS:
        raise RemoteError(f"invalid checksum {value!r}: expected sha256:<hex> (or sha384, sha512)")
    size = hashlib.new(alg).digest_size * 2
    if len(hexpart) != size or any(c not in "0123456789abcdef" for c in hexpart):
        raise RemoteError(f"invalid checksum {value!r}: {alg} needs {size} lower-case hex digits")
    return alg, hexpart


@dataclass(frozen=True)
class Download:
    """A fetched URL: the file (in the caller's directory), its sha256 and its mtime (seconds)."""

    path: Path
    name: str
    digest: str
    mtime: int | None


def fetch(url: str, directory: Path, *, checksum: str | None = None, timeout: float = 60.0) -> Download:
    """Download `url` into `directory/<name>` (0600, Last-Modified as mtime), verifying
    `checksum` if given. The file is complete and verified when this returns."""
    import urllib.error  # imported here: most builds never download, and these load slowly
    import urllib.request

    expected = parse_checksum(checksum) if checksum else None
    name = url_filename(url)
    target = directory / name
    request = urllib.request.Request(url, headers={"User-Agent": f"pybuild/{__version__}"})
    sha256 = hashlib.sha256()
    check = hashlib.new(expected[0]) if expected else None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
            last_modified = response.headers.get("Last-Modified")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(_CHUNK):
                    sha256.update(chunk)
                    if check is not None:
                        check.update(chunk)
                    out.write(chunk)
    except urllib.error.HTTPError as e:
        raise RemoteError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise RemoteError(f"{url}: cannot download: {reason}") from None
    if expected is not None and check is not None and check.hexdigest() != expected[1]:
        target.unlink(missing_ok=True)
        raise DigestMismatch(url, expected=f"{expected[0]}:{expected[1]}", got=f"{expected[0]}:{check.hexdigest()}")
    os.chmod(target, 0o600)
    mtime = _http_time(last_modified)
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return Download(target, name, "sha256:" + sha256.hexdigest(), mtime)


def _http_time(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return calendar.timegm(parsed[:9]) - (parsed[9] or 0)
