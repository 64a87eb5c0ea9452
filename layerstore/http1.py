"""HTTP/1.1 on a socket, the part of it a registry client needs: one request at a time on a kept-alive
connection, a body framed by Content-Length, chunked coding or the connection's end, TLS for https.

Why not http.client: importing it imports the email package (for its header parser) and ssl,
about 10 ms of every pull's and push's start-up, as much as a pull of an image the store already
holds spends on its own work (bench/transfer_bench.py). Here ssl is imported only when an https
connection is opened. What a server sends is bounded as http.client bounds it (line length,
number of header fields), and a body that ends early is an error, never a short read.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import ssl

MAX_LINE = 65536  # a status line, header field or chunk-size line (http.client's limit)
MAX_FIELDS = 100  # header fields of one response (http.client's limit)
MAX_INTERIM = 100  # 1xx answers before the real one
MAX_LENGTH_DIGITS = 19  # a Content-Length (2**63 has 19 digits)
DEFAULT_PORTS = {"http": 80, "https": 443}
NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(OSError):
    """The server broke HTTP/1.1 (status line, header fields, chunk framing) or hung up before
    answering. An OSError, as a lost connection is: both may be retried."""


class IncompleteRead(ProtocolError):
    """The connection ended before the body did."""


class CertificateError(OSError):
    """The server's TLS certificate did not verify; `verify_message` is OpenSSL's reason."""

    def __init__(self, verify_message: str) -> None:
        super().__init__(verify_message)
        self.verify_message = verify_message


class Headers:
    """A response's header fields: `get` by name in any case (the first field of that name wins),
    `items` in the order they came."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._first: dict[str, str] = {}
        for name, value in fields:
            self._first.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._fields if n.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def split_host(netloc: str, scheme: str) -> tuple[str, int]:
    """The host name and port of `host[:port]` (`[v6]:port` too), the scheme's port by default.
    ValueError for a port that is not a number."""
    host, sep, port = netloc.rpartition(":")
    if not sep or "]" in port:  # no port; or an IPv6 literal's last colon
        host, port = netloc, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port:
        return host, DEFAULT_PORTS[scheme]
    if not port.isdigit():
        raise ValueError(f"bad port in {netloc!r}")
    return host, int(port)


def _check_token(what: str, text: str) -> None:
    """Refuse text that would end a request line or header field early (CR, LF, NUL) or, in a
    request target, a space or non-ASCII: a Location header must not smuggle a second request."""
    bad = any(c in text for c in "\r\n\0")
    if what == "request target":
        bad = bad or " " in text or not text.isascii()
    if bad:
        raise ValueError(f"refusing to send a {what} containing control characters or spaces: {text!r}")


class Connection:
    """One connection to `netloc` (`host[:port]`), opened on the first request. One request and its
    response at a time: the caller reads a response to its end before the next request (the
    registry transport's pool hands a connection to one request at a time)."""

    def __init__(self, scheme: str, netloc: str, *, timeout: float,
                 tls_context: Callable[[], ssl.SSLContext] | None = None, blocksize: int = 65536) -> None:
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme {scheme!r}")
        self.scheme = scheme
        self.netloc = netloc
        self.timeout = timeout
        self.blocksize = blocksize
        self._tls_context = tls_context
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._method = ""
        self._response: Response | None = None  # the last one, which must be read before the next request

    def _connect(self) -> None:
        host, port = split_host(self.netloc, self.scheme)
        # bytes: a str host makes getaddrinfo load the idna codec, ~1 ms, for nothing when ASCII
        sock = socket.create_connection((host.encode() if host.isascii() else host, port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                sock = self._wrap_tls(sock, host)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._file = sock.makefile("rb")  # type: ignore[assignment]

    def _wrap_tls(self, sock: socket.socket, host: str) -> socket.socket:
        import ssl  # only for https: ~3 ms

        if self._tls_context is None:
            raise ValueError("an https connection needs a TLS context")
        try:
            return self._tls_context().wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            raise CertificateError(str(e.verify_message)) from None

    def request(self, method: str, target: str, body: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Send one request. A body is bytes or a reader (sent in `blocksize` pieces to its end);
        its Content-Length is the caller's to give."""
        if self._response is not None and not self._response.isclosed():
            raise ProtocolError("the previous response on this connection was not read to its end")
        target = target or "/"  # a URL without a path (a Location of https://host)
        _check_token("request target", target)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.netloc}", "Accept-Encoding: identity"]
        for name, value in (headers or {}).items():
            _check_token("header field", f"{name}: {value}")
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self._sock is None:
            self._connect()
        sock = self._sock
        assert sock is not None
        self._method = method
        self._response = None
        if body is None or isinstance(body, bytes) and len(body) <= self.blocksize:
            sock.sendall(head + body if body else head)  # one segment for a small request
            return
        sock.sendall(head)
        if isinstance(body, bytes):
            sock.sendall(body)
            return
        while piece := body.read(self.blocksize):
            sock.sendall(piece)

    def getresponse(self) -> Response:
        """Read the status line and header fields of the answer to the last request (skipping any
        interim 1xx answers); the body is then read from the Response."""
        if self._file is None:
            raise ProtocolError("no request was sent on this connection")
        for _ in range(MAX_INTERIM + 1):
            line = self.read_line()
            if not line:
                raise ProtocolError("the server closed the connection without answering")
            version, status, reason = _status_line(line)
            fields = self.read_fields()
            if not 100 <= status < 200 or status == 101:
                self._response = Response(self, self._method, version, status, reason, Headers(fields))
                return self._response
        raise ProtocolError(f"more than {MAX_INTERIM} interim (1xx) answers")

    def _open_file(self) -> BinaryIO:
        if self._file is None:
            raise ProtocolError("the connection is closed")
        return self._file

    def read_line(self) -> bytes:
        """One line of the response (status, header field, chunk size), at most MAX_LINE bytes."""
        line = self._open_file().readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError(f"a line of the response is longer than {MAX_LINE} bytes")
        return line

    def read_fields(self) -> list[tuple[str, str]]:
        """Header (or trailer) fields up to the empty line that ends them."""
        fields: list[tuple[str, str]] = []
        while True:
            line = self.read_line()
            if line in (b"\r\n", b"\n"):
                return fields
            if not line:
                raise ProtocolError("the connection ended inside the response's header fields")
            if len(fields) >= MAX_FIELDS:
                raise ProtocolError(f"the response has more than {MAX_FIELDS} header fields")
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"malformed header field {line[:80]!r}")
            fields.append((name, value.strip()))

    def readinto(self, buf: memoryview) -> int:
        return self._open_file().readinto(buf)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        file, sock = self._file, self._sock
        self._file = self._sock = None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()


def _status_line(line: bytes) -> tuple[str, int, str]:
    """('HTTP/1.1', 200, 'OK') of b'HTTP/1.1 200 OK\\r\\n'; ProtocolError for anything else."""
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _is_number(parts[1], 3) or len(parts[1]) != 3:
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


class Response:
    """The answer to one request: `status`, `headers`, and the body to read (`read`, `readinto`).
    `isclosed()` once the body has been read to its end (the connection may then carry the next
    request unless `will_close`)."""

    def __init__(self, conn: Connection, method: str, version: str, status: int, reason: str,
                 headers: Headers) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        tokens = {t.strip().lower() for t in ",".join(headers.get_all("Connection")).split(",")}
        self.will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        self._chunked = False
        self._left: int | None = 0  # body bytes (of the current chunk, when chunked) not yet read
        self._failure: OSError | None = None  # raised by the next read: the bytes before it went first
        codings = ",".join(headers.get_all("Transfer-Encoding"))
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            pass
        elif codings:
            if codings.strip().lower() != "chunked":  # a coding we would have to undo: none is asked for
                raise ProtocolError(f"unsupported Transfer-Encoding {codings!r}")
            self._chunked = True
        elif "Content-Length" in headers:
            self._left = _content_length(headers.get_all("Content-Length"))
        else:
            self._left = None  # to the connection's end
            self.will_close = True
        self._done = not self._chunked and self._left == 0

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name)

    def isclosed(self) -> bool:
        return self._done

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes of the body; fewer only at its end (b"" after it), or when the connection
        ended first (the next read raises IncompleteRead). n < 0: the rest of the body, or
        IncompleteRead."""
        want = n if n >= 0 else sys.maxsize
        pieces = []
        while want > 0 and not self._done:
            size = min(want, self._left or 1 << 16, 1 << 20)  # not n at once: that may be megabytes
            buf = bytearray(size)
            got = self.readinto(buf)
            del buf[got:]
            pieces.append(buf)
            want -= got
            if got < size and n >= 0:  # the body ended, or the connection did (the next read raises)
                break
        return b"".join(pieces)

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Fill `buf` from the body as far as it goes: fewer bytes only at the body's end, 0 after
        it. When the connection ends first (or the server breaks the chunked framing): the bytes
        that did arrive, then IncompleteRead (ProtocolError) from the next call, so that a caller
        may resume after them."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        with memoryview(buf) as raw, raw.cast("B") as view:  # released on return: `buf` may be resized
            return self._fill(view)

    def _fill(self, view: memoryview) -> int:
        filled = 0
        try:
            while filled < len(view) and not self._done:
                if self._chunked and not self._left:
                    self._next_chunk()
                    continue
                want = len(view) - filled if self._left is None else min(len(view) - filled, self._left)
                got = self._conn.readinto(view[filled:filled + want])
                if got == 0:
                    if self._left is None:  # framed by the connection's end: this is the end
                        self._done = True
                        break
                    raise IncompleteRead(f"the connection ended {self._left} bytes before the body's end")
                filled += got
                if self._left is not None:
                    self._left -= got
                    if self._left == 0 and not self._chunked:
                        self._done = True
                    elif self._left == 0:
                        self._chunk_end()
        except OSError as e:
            if not filled:
                raise
            self._failure = e.with_traceback(None)  # its frames would keep `view` exported
        return filled

    def _next_chunk(self) -> None:
        line = self._conn.read_line()
        if not line:
            raise IncompleteRead("the connection ended before the next chunk")
        size = line.split(b";", 1)[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF") or len(size) > 16:
            raise ProtocolError(f"bad chunk size line {line[:80]!r}")
        self._left = int(size, 16)
        if self._left == 0:
            self._conn.read_fields()  # trailer fields, ignored
            self._done = True

    def _chunk_end(self) -> None:
        line = self._conn.read_line()
        if not line:
            raise IncompleteRead("the connection ended after a chunk")
        if line not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk is not followed by CRLF")


def _is_number(text: str, digits: int) -> bool:
    """ASCII digits only (str.isdigit takes '²' too), at most `digits` of them."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _content_length(values: list[str]) -> int:
    """The body length of Content-Length fields; repeated fields must agree (RFC 9112 6.3)."""
    lengths = {v.strip() for value in values for v in value.split(",")}
    if len(lengths) != 1 or not _is_number(next(iter(lengths)), MAX_LENGTH_DIGITS):
        raise ProtocolError(f"bad Content-Length {', '.join(values)!r}")
    return int(lengths.pop())
