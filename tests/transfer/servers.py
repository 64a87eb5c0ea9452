"""Servers the transfer tests run for real: CNCF distribution (`docker-registry serve`) with no auth,
htpasswd Basic auth or Bearer tokens; the small token server those tokens come from; and a
fault-injecting proxy that makes a real registry fail, lie or hang up on request.

Every server binds 127.0.0.1 on a free port, is polled for readiness with a deadline, and is
stopped by its owner in a `finally` (see conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

READY_SECONDS = 30.0
SERVICE = "pybuild-test-registry"
ISSUER = "pybuild-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(host: str, deadline: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll GET /v2/ on `host` until any HTTP answer arrives; fail with the log if the deadline
    passes or the process dies."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text() if log else ''}")
        try:
            conn = http.client.HTTPConnection(host, timeout=2)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError as e:
            last = e
            time.sleep(0.02)
    raise RuntimeError(f"{host} not ready after {READY_SECONDS}s ({last}):\n{log.read_text() if log else ''}")


class _Stoppable:
    """`with Server(...) as s:` stops the server when the block ends, however it ends."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ThreadedServer(_Stoppable):
    """An http.server on 127.0.0.1:`port`, served by a thread until `stop`."""

    port: int

    def serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry(_Stoppable):
    """A running `docker-registry serve` on 127.0.0.1. `host` is `127.0.0.1:PORT`."""

    def __init__(self, workdir: Path, auth: str = "", tls: tuple[Path, Path] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True)
        self.log = workdir / "registry.log"
        config = workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.storage}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.host}, secret: pybuild-test"
            + (f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else "") + "}\n" + auth
        )
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            wait_for_http(self.host, time.monotonic() + READY_SECONDS, self.proc, self.log)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that nobody trusts, and its key."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def htpasswd_auth(workdir: Path, users: dict[str, str]) -> str:
    """The `auth:` config section for bcrypt htpasswd users (made with `htpasswd -B`)."""
    path = workdir / "htpasswd"
    lines = []
    for user, password in users.items():
        out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True)
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return f"auth: {{htpasswd: {{realm: pybuild-test, path: {path}}}}}\n"


# -- the token server -----------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_to_raw_ecdsa(der: bytes) -> bytes:
    """An ASN.1 ECDSA-Sig-Value (SEQUENCE of two INTEGERs) -> r||s, 32 bytes each, as JWS wants."""
    def read_int(buf: bytes, i: int) -> tuple[int, int]:
        if buf[i] != 0x02:
            raise ValueError("not an INTEGER")
        n = buf[i + 1]
        return int.from_bytes(buf[i + 2:i + 2 + n], "big"), i + 2 + n

    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    r, i = read_int(der, i)
    s, _ = read_int(der, i)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class TokenServer(_ThreadedServer):
    """Issues ES256 JWTs (with the signing certificate in `x5c`) for distribution's token auth.

    `users` may log in; authenticated users get what they ask for, anonymous ones get `pull` only
    when `anonymous_pull`. Every request's user and scopes are recorded in `requests`.
    """

    workdir: Path
    users: dict[str, str]
    anonymous_pull: bool = False
    requests: list[tuple[str | None, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = self.workdir / "token.key"
        self.cert = self.workdir / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=pybuild-test-token"],
            check=True, capture_output=True,
        )
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(url.query)
                status, body = server.issue(self.headers.get("Authorization"), q.get("scope", []))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def auth_config(self) -> str:
        return (f"auth: {{token: {{realm: '{self.realm}', service: {SERVICE}, issuer: {ISSUER}, "
                f"rootcertbundle: {self.cert}}}}}\n")

    def issue(self, authorization: str | None, scopes: list[str]) -> tuple[int, dict[str, object]]:
        user = None
        if authorization and authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self.requests.append((name, scopes))
                return 401, {"details": "bad credentials"}
            user = name
        self.requests.append((user, scopes))
        if user is None and not self.anonymous_pull:
            return 401, {"details": "authentication required"}
        access = []
        for scope in scopes:
            kind, name, actions = re.match(r"^([^:]*):(.*):([^:]*)$", scope).groups()  # type: ignore[union-attr]
            granted = [a for a in actions.split(",") if user is not None or a == "pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        return 200, {"token": self.sign(user or "", access), "expires_in": 300}

    def sign(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), capture_output=True, check=True).stdout
        return f"{signing_input}.{_b64url(_der_to_raw_ecdsa(der))}"


# -- the fault-injecting proxy --------------------------------------------------------------------

@dataclass
class Fault:
    """Applies to requests whose method matches and whose path matches `path` (a regex), `times`
    times (None: always) after letting the first `skip` through. `kind`: `status` (answer `status` without forwarding), `truncate` (send
    the full Content-Length but half the body, then hang up), `extra` (append bytes to the body),
    `corrupt` (flip a byte of the body), `hangup` (close the connection without answering)."""

    method: str
    path: str
    kind: str
    status: int = 503
    times: int | None = 1
    retry_after: str | None = None
    skip: int = 0
    hits: int = 0
    seen: int = 0


class FaultProxy(_ThreadedServer):
    """An HTTP proxy in front of `upstream` (host:port) that applies the `faults` it holds."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path, dict(self.headers.items())))
                fault = proxy.match(self.command, self.path)
                if fault is not None and fault.kind == "hangup":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault is not None and fault.kind == "status":
                    self.send_response(fault.status)
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                status = resp.status
                if fault is not None and fault.kind == "extra":
                    data += b"extra bytes the descriptor does not promise"
                if fault is not None and fault.kind == "corrupt" and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault is not None and fault.kind == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def match(self, method: str, path: str) -> Fault | None:
        for f in self.faults:
            if f.method not in (method, "*") or not re.search(f.path, path):
                continue
            f.seen += 1
            if f.seen > f.skip and (f.times is None or f.hits < f.times):
                f.hits += 1
                return f
        return None


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()

