"""layerstore.http1 against a real socket server that answers with scripted bytes: the framings a
registry or a proxy may use (Content-Length, chunked, to the connection's end, none for HEAD/204),
kept-alive connections, and the ways a server can break HTTP, each an error rather than a short or
wrong body."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from layerstore import http1


@dataclass
class Scripted:
    """A server on 127.0.0.1 that answers the n-th request it reads with `answers[n]` (bytes;
    `None`: hang up without answering), then closes the connection when `close_after` says so.
    `requests` holds each request's head and body as received."""

    answers: list[bytes | None]
    close_after: bool = False
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.netloc = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as f:
                while self.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = f.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                                   if h.lower().startswith(b"content-length:")), 0)
                    self.requests.append((head, f.read(length)))
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if self.close_after:
                        break

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes an accept() waiting for a request never sent
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def serve() -> Iterator[type[Scripted]]:
    started: list[Scripted] = []

    class Server(Scripted):
        def __post_init__(self) -> None:
            super().__post_init__()
            started.append(self)

    yield Server
    for s in started:
        s.close()


def get(netloc: str, method: str = "GET", body: bytes | None = None) -> tuple[http1.Connection, http1.Response]:
    conn = http1.Connection("http", netloc, timeout=10)
    conn.request(method, "/v2/x", body=body, headers={"Content-Length": str(len(body))} if body else None)
    return conn, conn.getresponse()


def test_content_length_body_and_a_kept_alive_connection(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDocker-Content-Digest: sha256:x\r\n\r\nhello",
                    b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nLocation: /v2/y\r\n\r\n"])
    conn, resp = get(server.netloc)
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.headers.get("docker-content-digest") == "sha256:x"
    assert not resp.isclosed()
    assert resp.read() == b"hello" and resp.isclosed() and not resp.will_close
    conn.request("PUT", "/v2/y", body=b"data", headers={"Content-Length": "4"})
    second = conn.getresponse()
    assert (second.status, second.getheader("LOCATION"), second.isclosed()) == (201, "/v2/y", True)
    assert server.connections == 1
    head, body = server.requests[1]
    assert head.startswith(b"PUT /v2/y HTTP/1.1\r\n") and f"Host: {server.netloc}".encode() in head
    assert body == b"data"
    conn.close()


def test_a_reader_body_is_sent_to_its_end(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"])
    conn = http1.Connection("http", server.netloc, timeout=10, blocksize=7)
    data = bytes(range(256)) * 40
    conn.request("PATCH", "/v2/u", body=io.BytesIO(data), headers={"Content-Length": str(len(data))})
    assert conn.getresponse().status == 202
    assert server.requests[0][1] == data
    conn.close()


def test_chunked_body_with_extensions_and_trailers(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4;ext=1\r\nabcd\r\n0A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"])
    conn, resp = get(server.netloc)
    buf = bytearray(6)
    assert resp.readinto(buf) == 6 and bytes(buf) == b"abcd01"  # across a chunk boundary
    assert resp.read(100) == b"23456789"
    assert resp.isclosed() and resp.read() == b"" and resp.readinto(buf) == 0
    conn.close()


def test_a_body_framed_by_the_connections_end(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.0 200 OK\r\n\r\nuntil the end"], close_after=True)
    conn, resp = get(server.netloc)
    assert resp.will_close
    assert resp.read() == b"until the end" and resp.isclosed()
    conn.close()


@pytest.mark.parametrize("method, status", [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_answers_without_a_body(serve: type[Scripted], method: str, status: int) -> None:
    server = serve([f"HTTP/1.1 {status} X\r\nContent-Length: 12\r\n\r\n".encode(),
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    conn, resp = get(server.netloc, method)
    assert resp.status == status and resp.isclosed() and resp.read() == b""
    conn.request("GET", "/v2/next")
    assert conn.getresponse().read() == b"ok"  # the same connection, nothing left in between
    conn.close()


def test_interim_answers_are_skipped(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"])
    conn, resp = get(server.netloc)
    assert (resp.status, resp.read()) == (200, b"z")
    conn.close()


def test_connection_close_is_honoured(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\nz"])
    conn, resp = get(server.netloc)
    assert resp.will_close and resp.read() == b"z"
    conn.close()


@pytest.mark.parametrize("answer, error, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", http1.IncompleteRead, "7 bytes before"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n", http1.ProtocolError,
     "not followed by CRLF"),
])
def test_what_arrived_comes_first_then_the_error(serve: type[Scripted], answer: bytes, error: type[Exception],
                                                 message: str) -> None:
    """A caller can resume after the bytes it has (a cut download continues with a Range request)."""
    server = serve([answer], close_after=True)
    conn, resp = get(server.netloc)
    buf = bytearray(10)
    assert resp.readinto(buf) == 3 and bytes(buf[:3]) == b"abc"
    with pytest.raises(error, match=message):
        resp.readinto(buf)
    conn.close()


def test_reading_a_cut_body_to_its_end_is_an_error(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], close_after=True)
    conn, resp = get(server.netloc)
    with pytest.raises(http1.IncompleteRead):
        resp.read()  # not b"abc": a short body is never taken for the whole
    conn.close()


def test_no_request_while_the_last_response_is_unread(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nEVL", b"HTTP/1.1 200 OK\r\n\r\n"])
    conn, resp = get(server.netloc)
    with pytest.raises(http1.ProtocolError, match="not read to its end"):
        conn.request("GET", "/v2/next")
    assert len(server.requests) == 1
    assert resp.read(1) == b"E"
    conn.close()
    with pytest.raises(http1.ProtocolError, match="closed"):
        resp.read()  # the connection is gone: an error, not an assertion


def test_an_empty_target_is_the_root(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = http1.Connection("http", server.netloc, timeout=10)
    conn.request("GET", "")
    assert conn.getresponse().status == 200
    assert server.requests[0][0].startswith(b"GET / HTTP/1.1\r\n")
    conn.close()


def test_a_cut_chunked_body_is_an_error(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"], close_after=True)
    conn, resp = get(server.netloc)
    assert resp.read(2) == b"ab"
    with pytest.raises(http1.IncompleteRead):
        resp.read()
    conn.close()


def test_a_hangup_instead_of_an_answer(serve: type[Scripted]) -> None:
    server = serve([None])
    conn = http1.Connection("http", server.netloc, timeout=10)
    conn.request("GET", "/v2/")
    with pytest.raises(http1.ProtocolError, match="without answering"):
        conn.getresponse()
    conn.close()


BROKEN = [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n", "longer than 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header fields"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header field"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header field"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     "unsupported Transfer-Encoding"),
    ("HTTP/1.1 \u00b200 OK\r\n\r\n".encode("latin-1"), "not an HTTP/1.x status line"),  # '²'.isdigit()
    ("HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"), "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 100 Continue\r\n\r\n" * 101 + b"HTTP/1.1 200 OK\r\n\r\n", "more than 100 interim"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", "inside the response's header fields"),
]


@pytest.mark.parametrize("answer, message", BROKEN)
def test_broken_answers_are_refused(serve: type[Scripted], answer: bytes, message: str) -> None:
    server = serve([answer], close_after=True)
    conn = http1.Connection("http", server.netloc, timeout=10)
    conn.request("GET", "/v2/")
    with pytest.raises(http1.ProtocolError, match=message):
        conn.getresponse()
    conn.close()


@pytest.mark.parametrize("chunk", [b"0x5", b"+5", b"5 5", b"", b"1" * 17, b"zz"])
def test_bad_chunk_sizes_are_refused(serve: type[Scripted], chunk: bytes) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + b"\r\nhello\r\n0\r\n\r\n"],
                   close_after=True)
    conn, resp = get(server.netloc)
    with pytest.raises(http1.ProtocolError, match="bad chunk size"):
        resp.read()
    conn.close()


def test_a_chunk_without_its_crlf_is_refused(serve: type[Scripted]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n0\r\n\r\n"],
                   close_after=True)
    conn, resp = get(server.netloc)
    with pytest.raises(http1.ProtocolError, match="not followed by CRLF"):
        resp.read()
    conn.close()


@pytest.mark.parametrize("target, headers", [
    ("/v2/x HTTP/1.1\r\nHost: evil", {}),
    ("/v2/x y", {}),
    ("/v2/\u00e9", {}),
    ("/v2/x", {"Authorization": "Bearer t\r\nX-Injected: 1"}),
])
def test_nothing_is_sent_that_would_split_the_request(serve: type[Scripted], target: str,
                                                      headers: dict[str, str]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    conn = http1.Connection("http", server.netloc, timeout=10)
    with pytest.raises(ValueError, match="refusing to send"):
        conn.request("GET", target, headers=headers)
    assert server.requests == [] and server.connections == 0
    conn.close()


@pytest.mark.parametrize("netloc, scheme, expected", [
    ("127.0.0.1:5000", "http", ("127.0.0.1", 5000)),
    ("registry.example", "https", ("registry.example", 443)),
    ("localhost", "http", ("localhost", 80)),
    ("[::1]:5000", "http", ("::1", 5000)),
    ("[::1]", "https", ("::1", 443)),
])
def test_split_host(netloc: str, scheme: str, expected: tuple[str, int]) -> None:
    assert http1.split_host(netloc, scheme) == expected


def test_a_port_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="bad port"):
        http1.split_host("host:http", "http")


def test_headers_lookup_ignores_case_and_keeps_order() -> None:
    h = http1.Headers([("WWW-Authenticate", "Basic"), ("www-authenticate", "Bearer"), ("Link", "<a>")])
    assert h.get("www-AUTHENTICATE") == "Basic" and h.get_all("WWW-Authenticate") == ["Basic", "Bearer"]
    assert "link" in h and "Range" not in h and h.get("Range", "none") == "none"
    assert [n for n, _ in h.items()] == ["WWW-Authenticate", "www-authenticate", "Link"]
