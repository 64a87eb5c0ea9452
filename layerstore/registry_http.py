"""HTTP to one registry: scheme choice, kept-alive connections, retries, redirects and auth.

`Transport.request` sends one API request and returns the final response, having
- chosen the scheme once (plain http for localhost and 127.0.0.0/8, or https where that is what
  such a registry answers; https otherwise; with `tls_verify=False`, https without certificate
  checks and then plain http, as Docker treats an insecure registry),
- answered 401 challenges through the `Authenticator` (Basic, or a Bearer token for the scopes),
- retried with exponential backoff (honouring Retry-After) on 429, 5xx and connection failures,
  re-opening a streamed body for each attempt,
- followed redirects of GET and HEAD, without our Authorization header when the host changes.
Statuses other than those are the caller's to judge (`raise_for_status`).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from layerstore import http1
from layerstore.auth import Credentials
from layerstore.lazylog import Logger
from layerstore.registry_auth import Authenticator, parse_challenges
from pybuild import __version__
from pybuild.errors import RegistryError

if TYPE_CHECKING:
    import ssl

log = Logger(__name__)

USER_AGENT = f"pybuild/{__version__}"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_RETRIES = 4
BACKOFF_START_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 8.0
RETRY_AFTER_MAX_SECONDS = 30.0
MAX_SMALL_BODY = 4 * 1024 * 1024 + 1
BLOCK = 1024 * 1024


def api_host(domain: str) -> str:
    """Where a registry's API answers: Docker Hub's is registry-1.docker.io."""
    return "registry-1.docker.io" if domain in ("docker.io", "index.docker.io") else domain


def is_local(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def schemes_to_try(host: str, tls_verify: bool) -> tuple[str, ...]:
    """The schemes to try, in order, for a registry host (pure policy): a local registry is spoken
    to in plain http, or in https when that is what it answers (with its certificate checked unless
    `tls_verify` is false); any other in https, falling back to plain http only when `tls_verify`
    is false (Docker's "insecure registry")."""
    if is_local(host):
        return ("http", "https")
    return ("https",) if tls_verify else ("https", "http")


def backoff_delay(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): Retry-After when the server sent
    seconds, else 0.25 s doubling to 8 s."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), RETRY_AFTER_MAX_SECONDS)
        except ValueError:
            pass
    return min(BACKOFF_START_SECONDS * 2.0**attempt, BACKOFF_MAX_SECONDS)


@dataclass(frozen=True)
class BodySource:
    """A request body that can be sent again: `open()` gives a fresh reader of `length` bytes."""

    open: Callable[[], BinaryIO]
    length: int


Body = bytes | BodySource | None


@dataclass
class Response:
    status: int
    headers: http1.Headers
    url: str
    body: bytes = b""
    raw: http1.Response | None = None
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def read(self, n: int = -1) -> bytes:
        """Read from a streamed body (stream=True)."""
        with self._reading() as raw:
            return raw.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Fill `buf` from a streamed body as far as it goes (fewer bytes only at its end); 0 at
        the end. No new bytes object per read: the caller reuses its buffers."""
        with self._reading() as raw:
            return raw.readinto(buf)

    @contextmanager
    def _reading(self) -> Iterator[http1.Response]:
        """The streamed body, with a lost connection turned into a TransientError (retried)."""
        if self.raw is None:
            raise RegistryError("response body is not streamed")
        try:
            yield self.raw
        except http1.IncompleteRead:
            raise TransientError(f"{_short(self.url)}: connection closed mid-body") from None
        except OSError as e:
            raise TransientError(f"{_short(self.url)}: reading the body failed: {e}") from None

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pool:
    """Idle kept-alive connections by (scheme, host). Thread-safe."""

    def __init__(self, tls_verify: bool, timeout: float) -> None:
        self._idle: dict[tuple[str, str], list[http1.Connection]] = {}
        self._lock = threading.Lock()
        self._timeout = timeout
        self._tls_verify = tls_verify
        self._ctx: ssl.SSLContext | None = None  # made on first https use: loading CAs costs ~20 ms

    def _context(self) -> ssl.SSLContext:
        import ssl  # only for https: ~3 ms

        with self._lock:
            if self._ctx is None:
                ctx = ssl.create_default_context()
                if not self._tls_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._ctx = ctx
            return self._ctx

    def get(self, scheme: str, host: str) -> tuple[http1.Connection, bool]:
        with self._lock:
            idle = self._idle.get((scheme, host))
            if idle:
                return idle.pop(), True
        return self.get_new(scheme, host)

    def get_new(self, scheme: str, host: str) -> tuple[http1.Connection, bool]:
        return http1.Connection(scheme, host, timeout=self._timeout, tls_context=self._context, blocksize=BLOCK), False

    def put(self, scheme: str, host: str, conn: http1.Connection) -> None:
        with self._lock:
            self._idle.setdefault((scheme, host), []).append(conn)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for c in conns:
                    c.close()
            self._idle.clear()


class TransientError(RegistryError):
    """A failure that retrying might cure (connection lost, 429, 5xx) which outlasted the retries."""


class _Retry(Exception):
    def __init__(self, why: str, retry_after: str | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class Transport:
    """HTTP to the registry `domain` (as in an image reference). Thread-safe; reuse one per push
    or pull so connections and tokens are shared."""

    def __init__(
        self,
        domain: str,
        *,
        tls_verify: bool = True,
        credentials: Credentials | None = None,
        retries: int = DEFAULT_RETRIES,
        timeout: float = 120.0,
    ) -> None:
        self.domain = domain
        self.host = api_host(domain)
        self.tls_verify = tls_verify
        self.retries = retries
        self._pool = _Pool(tls_verify, timeout)
        self._scheme: str | None = None
        self._scheme_lock = threading.Lock()
        self.auth = Authenticator(domain, credentials, self._fetch_plain)

    def close(self) -> None:
        self._pool.close()

    @property
    def base(self) -> str:
        return f"{self._ensure_scheme()}://{self.host}"

    def ping(self) -> str:
        """Check that the host speaks the v2 API (GET /v2/ answers 200 or 401), choosing the
        scheme and learning the auth challenge on first use; returns the base URL."""
        return self.base

    def check_login(self) -> None:
        """Authenticate as the credentials say (a token with no scope, or Basic) and GET /v2/;
        RegistryError unless the registry accepts them."""
        resp = self.request("GET", "/v2/")
        if resp.status in (401, 403):
            _code, message = error_details(resp.body)
            raise RegistryError(f"{self.domain}: login refused (HTTP {resp.status}" + (f": {message})" if message else ")"),
                                status=resp.status, code="UNAUTHORIZED", hint="check the user name and password")
        raise_for_status(resp, f"{self.domain}: login")

    def _ensure_scheme(self) -> str:
        with self._scheme_lock:
            if self._scheme is not None:
                return self._scheme
            errors: list[str] = []
            for scheme in schemes_to_try(self.host, self.tls_verify):
                try:
                    resp = self._send_once("GET", f"{scheme}://{self.host}/v2/", {}, None, False)
                except http1.CertificateError as e:
                    raise RegistryError(
                        f"{self.host}: TLS certificate not trusted: {e.verify_message}",
                        hint="use --tls-verify=false for a registry with a self-signed certificate",
                    ) from None
                except (OSError, _Retry) as e:
                    errors.append(f"{scheme}: {e}")
                    continue
                if resp.status not in (200, 401):
                    # e.g. Go's "400 Client sent an HTTP request to an HTTPS server": try the next scheme
                    errors.append(f"{scheme}: GET /v2/ answered HTTP {resp.status}, not the registry v2 API")
                    continue
                self._learn(resp)
                self._scheme = scheme
                log.debug("%s: using %s", self.host, scheme)
                return scheme
            raise RegistryError(f"{self.host}: cannot reach the registry ({'; '.join(errors)})",
                                hint="is it running, and is the address right?")

    def _learn(self, resp: Response) -> None:
        if resp.status == 401:
            self.auth.learn(parse_challenges(resp.header("WWW-Authenticate") or ""))

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        scopes: Iterable[str] = (),
        stream: bool = False,
        auth: bool = True,
        retry: bool = True,
    ) -> Response:
        """Send one request (`path` is `/v2/...` or an absolute URL the registry gave) and return the
        final response after auth, redirects and retries. A streamed response must be closed."""
        base = self.base
        url = path if "://" in path else base + path
        scopes = tuple(scopes)
        attempt = 0
        auth_tries = 0
        while True:
            hdrs = dict(headers or {})
            sent_auth = self.auth.header(scopes) if auth else None
            if sent_auth and _same_origin(url, base):
                hdrs["Authorization"] = sent_auth
            try:
                resp = self._send_following(method, url, hdrs, body, stream, base)
            except _Retry as e:
                if not retry or attempt >= self.retries:
                    raise TransientError(f"{self.host}: {method} {_short(url)}: {e} (gave up after {attempt + 1} tries)",
                                         hint="the registry or the network is failing; try again later") from None
                delay = backoff_delay(attempt, e.retry_after)
                log.debug("%s %s: %s; retrying in %.2fs", method, url, e, delay)
                time.sleep(delay)
                attempt += 1
                continue
            if resp.status == 401 and auth and auth_tries < 2:
                challenges = parse_challenges(resp.header("WWW-Authenticate") or "")
                resp.close()
                auth_tries += 1
                if self.auth.answer(challenges, scopes, sent_auth):
                    continue
                return resp
            return resp

    def _send_following(self, method: str, url: str, headers: dict[str, str], body: Body, stream: bool,
                        base: str) -> Response:
        for _ in range(6):
            resp = self._send_once(method, url, headers, body, stream)
            if resp.status in REDIRECT_STATUSES and method in ("GET", "HEAD") and resp.header("Location"):
                resp.close()
                new = urllib.parse.urljoin(url, resp.header("Location") or "")
                if not _same_origin(new, base):
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = new
                continue
            return resp
        raise RegistryError(f"{self.host}: too many redirects for {method} {_short(url)}")

    def _send_once(self, method: str, url: str, headers: dict[str, str], body: Body, stream: bool) -> Response:
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme, parts.netloc
        target = parts.path + ("?" + parts.query if parts.query else "")
        hdrs = {"User-Agent": USER_AGENT, **headers}
        for fresh in (False, True):
            conn, reused = self._pool.get(scheme, host) if not fresh else self._pool.get_new(scheme, host)
            reader: BinaryIO | None = None
            try:
                if isinstance(body, BodySource):
                    reader = body.open()
                    hdrs["Content-Length"] = str(body.length)
                    conn.request(method, target, body=reader, headers=hdrs)
                else:
                    if body is not None or method in ("PUT", "POST", "PATCH"):
                        hdrs["Content-Length"] = str(len(body or b""))
                    conn.request(method, target, body=body, headers=hdrs)
                raw = conn.getresponse()
            except http1.CertificateError:
                conn.close()
                raise
            except ValueError as e:  # a URL or header that must not be sent (a hostile Location)
                conn.close()
                raise RegistryError(f"{host}: {e}") from None
            except OSError as e:  # refused, reset, timed out, or the server broke HTTP
                conn.close()
                if isinstance(e, socket.gaierror):
                    raise RegistryError(f"{host}: cannot resolve the registry's name ({e.strerror})") from None
                if reused and not fresh:
                    continue  # the server closed a kept-alive connection: once more on a new one
                raise _Retry(f"{type(e).__name__}: {e}") from None
            finally:
                if reader is not None:
                    reader.close()
            return self._wrap(raw, conn, scheme, host, url, method, stream)
        raise _Retry("connection failed")  # pragma: no cover - the loop always returns or raises

    def _wrap(self, raw: http1.Response, conn: http1.Connection, scheme: str, host: str,
              url: str, method: str, stream: bool) -> Response:
        if raw.status in RETRY_STATUSES:
            retry_after = raw.getheader("Retry-After")
            if _discard(raw) and not raw.will_close:
                self._pool.put(scheme, host, conn)
            else:
                conn.close()
            raise _Retry(f"HTTP {raw.status}", retry_after)

        def release() -> None:
            if raw.isclosed() and not raw.will_close:
                self._pool.put(scheme, host, conn)
            else:
                conn.close()

        if stream and method != "HEAD" and raw.status < 300:
            return Response(raw.status, raw.headers, url, raw=raw, _release=release)
        try:
            data = raw.read(MAX_SMALL_BODY) if method != "HEAD" else b""
            if len(data) >= MAX_SMALL_BODY:
                conn.close()
                raise RegistryError(f"{_short(url)}: response larger than {MAX_SMALL_BODY - 1} bytes; refusing it")
            if not raw.isclosed():
                raw.read()  # finishes a chunked body / HEAD so the connection can be reused
        except OSError as e:
            conn.close()
            raise _Retry(f"reading the response failed: {e}") from None
        release()
        return Response(raw.status, raw.headers, url, body=data)

    def _fetch_plain(self, method: str, url: str, headers: dict[str, str], body: bytes | None
                     ) -> tuple[int, dict[str, str], bytes]:
        """For the token endpoint: no registry auth, retries on 5xx."""
        for attempt in range(self.retries + 1):
            try:
                resp = self._send_once(method, url, headers, body, False)
                return resp.status, dict(resp.headers.items()), resp.body
            except _Retry as e:
                if attempt >= self.retries:
                    raise RegistryError(f"token service {_short(url)}: {e}") from None
                time.sleep(backoff_delay(attempt, e.retry_after))
        raise RegistryError(f"token service {_short(url)}: unreachable")  # pragma: no cover


def _discard(raw: http1.Response) -> bool:
    """Read and drop a (small) body; False when the connection cannot be reused."""
    try:
        raw.read(MAX_SMALL_BODY)
    except OSError:
        return False
    return raw.isclosed()


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _short(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return p.path


def error_details(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) of the first error in a distribution error body, if it has one."""
    try:
        doc = json.loads(body)
        err = doc["errors"][0]
        return str(err.get("code") or "") or None, str(err.get("message") or "") or None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, None


def raise_for_status(resp: Response, what: str, ok: Iterable[int] = (200,)) -> None:
    """RegistryError for a response whose status is not in `ok`, naming `what` and the registry's
    own error code and message."""
    if resp.status in tuple(ok):
        return
    body = resp.body
    if resp.raw is not None:
        try:
            body = resp.raw.read(MAX_SMALL_BODY)
        except OSError:
            body = b""
        resp.close()
    code, message = error_details(body)
    detail = f"{code}: {message}" if code and message else (code or message or "")
    text = f"{what}: HTTP {resp.status}" + (f" {detail}" if detail else "")
    hint = None
    if resp.status == 401:
        host = urllib.parse.urlsplit(resp.url).netloc
        hint = f"pybuild login {host}"
    elif resp.status == 403:
        hint = "the credentials in use are not allowed this"
    raise RegistryError(text, status=resp.status, code=code, hint=hint)
