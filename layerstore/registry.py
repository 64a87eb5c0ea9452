"""A client of the OCI distribution API (and Docker registry v2), on the standard library.

`RegistryClient(domain)` talks to one registry; repositories are paths such as `library/busybox`.
Every byte that arrives is checked against the digest that names it: a manifest fetched by digest
must hash to it, one fetched by tag must hash to what the registry says it is (when it says), a blob
must be exactly its descriptor's size and digest (`open_blob`, `fetch_blob`). Uploads ask first
(HEAD), then try a cross-repository mount, then upload: one PUT for small blobs, PATCH chunks for
big ones, resuming from what the registry acknowledged when a chunk fails.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from layerstore import auth
from layerstore.blobs import CHUNK, VerifyingReader
from layerstore.compression import Readable
from layerstore.digests import SizeMismatch, check_bytes, digest_of, json_object
from layerstore.lazylog import Logger
from layerstore.registry_auth import repository_scope
from layerstore.registry_http import (
    BodySource,
    Response,
    TransientError,
    Transport,
    backoff_delay,
    raise_for_status,
)
from layerstore.transfer_media import (
    INDEXES,
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    Platform,
    host_platform,
    manifest_media_type,
    select_manifest,
)
from layerstore.transfer_verify import copy_verified
from pybuild.errors import DigestMismatch, RegistryError

log = Logger(__name__)

MONOLITHIC_MAX = 32 * 1024 * 1024  # blobs up to this go up in one PUT
UPLOAD_CHUNK = 64 * 1024 * 1024  # bigger ones in PATCH chunks of this size
BLOB_RESUMES = 4  # how often a blob download may resume after losing its connection


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index exactly as the registry sent it, with the digest we computed."""

    media_type: str
    digest: str
    data: bytes

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


class RegistryClient:
    """One registry, many repositories; thread-safe (share one per push or pull).

    Credentials default to what `layerstore.auth.lookup` finds for the domain.
    """

    def __init__(
        self,
        domain: str,
        *,
        tls_verify: bool = True,
        credentials: auth.Credentials | None | object = ...,
        retries: int | None = None,
    ) -> None:
        creds = auth.lookup(domain) if credentials is ... else credentials
        kwargs = {} if retries is None else {"retries": retries}
        self.domain = domain
        self.transport = Transport(
            domain, tls_verify=tls_verify, credentials=creds if isinstance(creds, auth.Credentials) else None, **kwargs
        )

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """RegistryError unless the host answers the v2 API (chooses http/https on first use)."""
        self.transport.ping()

    def check_login(self) -> None:
        """RegistryError unless the registry accepts this client's credentials."""
        self.transport.check_login()

    def _name(self, repo: str, ref: str = "") -> str:
        sep = "@" if ref.startswith("sha256:") else ":"
        return f"{self.domain}/{repo}" + (f"{sep}{ref}" if ref else "")

    # -- manifests -------------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> FetchedManifest:
        """The manifest or index `reference` (tag or digest) of `repo`, verified: by digest it must
        hash to the digest; by tag it must hash to the Docker-Content-Digest the registry sends."""
        name = self._name(repo, reference)
        resp = self.transport.request(
            "GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
            scopes=[repository_scope(repo, "pull")],
        )
        if resp.status == 404:
            raise_for_status(resp, f"{name}: manifest unknown")
        raise_for_status(resp, f"{name}: fetching the manifest")
        data = resp.body
        if len(data) > MAX_MANIFEST_BYTES:
            raise RegistryError(f"{name}: manifest larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
        digest = digest_of(data)
        if reference.startswith("sha256:"):
            check_bytes(data, digest=reference, size=None, what=f"manifest {name}")
        said = resp.header("Docker-Content-Digest")
        if said and said.startswith("sha256:") and said != digest:
            raise DigestMismatch(f"manifest {name}", expected=said, got=digest,
                                 hint="the registry's Docker-Content-Digest does not match the manifest it sent")
        return FetchedManifest(manifest_media_type(data, resp.header("Content-Type")), digest, data)

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest a HEAD of the manifest reports, or None when it does not exist."""
        resp = self.transport.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_ACCEPT)},
            scopes=[repository_scope(repo, "pull")],
        )
        if resp.status == 404:
            return None
        raise_for_status(resp, f"{self._name(repo, reference)}: checking the manifest")
        return resp.header("Docker-Content-Digest")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """Upload `data` as manifest `reference` (a tag, or its own digest) with its media type;
        return its digest. Idempotent. The blobs it names must already be in `repo`."""
        digest = digest_of(data)
        name = self._name(repo, reference)
        resp = self.transport.request(
            "PUT", f"/v2/{repo}/manifests/{reference}", headers={"Content-Type": media_type}, body=data,
            scopes=[repository_scope(repo, "pull", "push")],
        )
        raise_for_status(resp, f"{name}: uploading the manifest", ok=(200, 201, 202))
        said = resp.header("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatch(f"manifest {name}", expected=digest, got=said,
                                 hint="the registry stored something other than the manifest sent")
        return digest

    def resolve(self, repo: str, reference: str, platform: Platform | None = None
                ) -> tuple[FetchedManifest, FetchedManifest | None]:
        """(image manifest, the index it was chosen from or None) for `reference`; an index or
        manifest list is resolved to `platform` (default: this machine's)."""
        top = self.get_manifest(repo, reference)
        if not top.is_index:
            return top, None
        desc = select_manifest(json_object(top.data, "index"), platform or host_platform(),
                               what=f"{self._name(repo, reference)} (an index)")
        child = self.get_manifest(repo, str(desc.get("digest")))
        if child.is_index:
            raise RegistryError(f"{self._name(repo, str(desc.get('digest')))}: an index nested in an index")
        return child, top

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of `repo`, following the Link header's pages."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list"
        while path:
            resp = self.transport.request("GET", path, scopes=[repository_scope(repo, "pull")])
            raise_for_status(resp, f"{self._name(repo)}: listing tags")
            doc = json_object(resp.body, "tag list")
            tags += [t for t in doc.get("tags") or [] if isinstance(t, str)]
            path = _next_link(resp.header("Link"))
        return tags

    # -- blobs -----------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """The size the registry reports for a blob in `repo`, or None when it has none there."""
        resp = self.transport.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=[repository_scope(repo, "pull")])
        if resp.status == 404:
            return None
        raise_for_status(resp, f"{self._name(repo)}: checking blob {digest}")
        try:
            return int(resp.header("Content-Length") or "")
        except ValueError:
            return -1

    @contextmanager
    def open_blob(self, repo: str, digest: str, size: int, *, verify: bool = True) -> Iterator[Readable]:
        """A reader of blob `digest` that raises rather than yield more than `size` bytes, fewer
        than `size`, or bytes hashing otherwise. A lost connection resumes with a Range request.
        With `verify=False` the bytes come unchecked (beyond a Content-Length larger than `size`),
        for a caller that checks digest and size itself, as the store's staging does."""
        what = f"blob {digest} of {self._name(repo)}"
        body = _ResumingBody(self, repo, digest, size, what)
        try:
            yield _verifying(body) if verify else body
        finally:
            body.close()

    def fetch_blob(self, repo: str, digest: str, size: int, sink: BinaryIO) -> int:
        """Copy blob `digest` to `sink`, verified (see `open_blob`); the bytes are in `sink` only if
        this returns."""
        with self.open_blob(repo, digest, size, verify=False) as body:
            return copy_verified(_verifying(body), sink)  # type: ignore[arg-type]

    def _get_blob(self, repo: str, digest: str, offset: int) -> Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.transport.request("GET", f"/v2/{repo}/blobs/{digest}", headers=headers,
                                      scopes=[repository_scope(repo, "pull")], stream=True)

    def upload_blob(self, repo: str, digest: str, source: BodySource, *, mount_from: Sequence[str] = ()) -> str:
        """Make blob `digest` (of `source.length` bytes) present in `repo`; returns how: `exists`,
        `mounted` (from one of the repositories `mount_from` on this registry) or `uploaded`.
        Idempotent; the registry checks the digest when the upload is committed."""
        size = self.blob_size(repo, digest)
        if size is not None:
            return "exists"
        location = None
        for other in mount_from[:1]:
            scopes = [repository_scope(repo, "pull", "push"), repository_scope(other, "pull")]
            q = urllib.parse.urlencode({"mount": digest, "from": other})
            resp = self.transport.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", scopes=scopes)
            if resp.status == 201:
                return "mounted"
            raise_for_status(resp, f"{self._name(repo)}: mounting {digest} from {other}", ok=(202,))
            location = resp.header("Location")
        if location is None:
            location = self._start_upload(repo)
        if source.length <= MONOLITHIC_MAX:
            self._put_whole(repo, digest, source, location)
        else:
            self._put_chunked(repo, digest, source, location)
        return "uploaded"

    def _start_upload(self, repo: str) -> str:
        resp = self.transport.request("POST", f"/v2/{repo}/blobs/uploads/",
                                      scopes=[repository_scope(repo, "pull", "push")])
        raise_for_status(resp, f"{self._name(repo)}: starting an upload", ok=(202,))
        location = resp.header("Location")
        if not location:
            raise RegistryError(f"{self._name(repo)}: the registry started an upload without a Location")
        return location

    def _put_whole(self, repo: str, digest: str, source: BodySource, location: str) -> None:
        for attempt in range(self.transport.retries + 1):
            try:
                resp = self.transport.request(
                    "PUT", _with_query(location, digest=digest), body=source,
                    headers={"Content-Type": "application/octet-stream"},
                    scopes=[repository_scope(repo, "pull", "push")], retry=False,
                )
            except TransientError:
                if attempt >= self.transport.retries:
                    raise
                time.sleep(backoff_delay(attempt, None))
                location = self._start_upload(repo)  # the failed session may be half-written
                continue
            raise_for_status(resp, f"{self._name(repo)}: uploading {digest}", ok=(201, 204))
            return

    def _put_chunked(self, repo: str, digest: str, source: BodySource, location: str) -> None:
        scopes = [repository_scope(repo, "pull", "push")]
        offset, failures = 0, 0
        while offset < source.length:
            end = min(offset + UPLOAD_CHUNK, source.length)
            part = _slice(source, offset, end - offset)
            try:
                resp = self.transport.request(
                    "PATCH", location, body=part, scopes=scopes, retry=False,
                    headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{end - 1}"},
                )
                if resp.status >= 500 or resp.status == 429:
                    raise TransientError(f"HTTP {resp.status}")
            except TransientError:
                failures += 1
                if failures > self.transport.retries:
                    raise
                time.sleep(backoff_delay(failures - 1, None))
                location, offset = self._upload_status(repo, location)
                log.debug("upload of %s resumes at %d", digest, offset)
                continue
            raise_for_status(resp, f"{self._name(repo)}: uploading {digest} (bytes {offset}-{end - 1})", ok=(202,))
            location = resp.header("Location") or location
            offset = end
        resp = self.transport.request("PUT", _with_query(location, digest=digest), scopes=scopes)
        raise_for_status(resp, f"{self._name(repo)}: committing the upload of {digest}", ok=(201, 204))

    def _upload_status(self, repo: str, location: str) -> tuple[str, int]:
        """(location, next offset) the registry holds for an upload in progress (Range: 0-N)."""
        resp = self.transport.request("GET", location, scopes=[repository_scope(repo, "pull", "push")])
        raise_for_status(resp, f"{self._name(repo)}: upload status", ok=(204,))
        rng = resp.header("Range") or ""
        try:
            end = int(rng.rpartition("-")[2]) + 1 if "-" in rng else 0
        except ValueError:
            end = 0
        return resp.header("Location") or location, end


class _ResumingBody:
    """The body of a blob GET that, when the connection drops before `size` bytes, asks again for
    the rest with `Range: bytes=N-` (at most BLOB_RESUMES times). Bytes past `size` are passed on
    for the VerifyingReader above to refuse."""

    def __init__(self, client: RegistryClient, repo: str, digest: str, size: int, what: str) -> None:
        self._client, self._repo, self.digest, self.size, self.what = client, repo, digest, size, what
        self.count = 0
        self._resumes = 0
        self._resp = self._open(0)

    def _open(self, offset: int) -> Response:
        resp = self._client._get_blob(self._repo, self.digest, offset)
        if resp.status == 404:
            raise_for_status(resp, f"{self.what}: blob unknown to the registry")
        expected = (206,) if offset else (200,)
        raise_for_status(resp, f"{self.what}: download", ok=expected)
        length = resp.header("Content-Length")
        if length is not None and length.isdigit() and offset + int(length) > self.size:
            resp.close()
            raise SizeMismatch(self.what, expected=self.size, got=f"{offset + int(length)} bytes (Content-Length)")
        if offset and not (resp.header("Content-Range") or "").startswith(f"bytes {offset}-"):
            resp.close()
            raise RegistryError(f"{self.what}: the registry did not resume at byte {offset}")
        return resp

    def read(self, n: int = -1) -> bytes:
        n = CHUNK if n is None or n < 0 else n
        while True:
            try:
                data = self._resp.read(n)
            except TransientError:
                data = b""
            if data or self.count >= self.size:
                self.count += len(data)
                return data
            if self._resumes >= BLOB_RESUMES:
                return b""  # the VerifyingReader reports the truncation
            self._resume()

    def readinto(self, buf: bytearray | memoryview) -> int:
        """`read`, into the caller's (reused) buffer: as many bytes as fit, 0 at the end."""
        while True:
            try:
                n = self._resp.readinto(buf)
            except TransientError:
                n = 0
            if n or self.count >= self.size:
                self.count += n
                return n
            if self._resumes >= BLOB_RESUMES:
                return 0  # the caller's size check reports the truncation
            self._resume()

    def _resume(self) -> None:
        self._resumes += 1
        self._resp.close()
        time.sleep(backoff_delay(self._resumes - 1, None))
        log.debug("%s: resuming at byte %d", self.what, self.count)
        self._resp = self._open(self.count)

    def close(self) -> None:
        self._resp.close()


def _verifying(body: _ResumingBody) -> VerifyingReader:
    return VerifyingReader(body, digest=body.digest, size=body.size, what=body.what,
                           truncated=lambda m: RegistryError(m + " (truncated by the registry)"))


def _slice(source: BodySource, offset: int, length: int) -> BodySource:
    def open_part() -> BinaryIO:
        f = source.open()
        f.seek(offset)
        return _Limited(f, length)  # type: ignore[return-value]

    return BodySource(open_part, length)


class _Limited:
    """At most `length` bytes of `f` (the transport sends a body reader to its end)."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f, self._left = f, length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(self._left if n is None or n < 0 else min(n, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _next_link(link: str | None) -> str | None:
    """The URL of `Link: </v2/x/tags/list?n=..&last=..>; rel="next"`."""
    if not link or 'rel="next"' not in link:
        return None
    start, end = link.find("<"), link.find(">")
    return link[start + 1:end] if 0 <= start < end else None


def open_file_source(path: str, length: int) -> BodySource:
    """A re-openable body reading a file."""
    return BodySource(lambda: open(path, "rb"), length)  # noqa: SIM115 - closed by the transport

