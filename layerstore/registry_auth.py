"""Registry authentication: reading `WWW-Authenticate` challenges and answering them.

`parse_challenges` is a pure parser of RFC 7235 challenges (`Bearer realm="...",service="...",
scope="repository:x:pull"`, `Basic realm="..."`, several in one header). `Authenticator` holds what
one client has learnt about one registry (its scheme, Basic credentials, Bearer tokens by scope) and
gives the Authorization header for a request. Tokens come from the challenge's realm as the
distribution token spec says: GET with service and scope parameters and Basic credentials, or an
OAuth2 POST with a refresh token when the auth file holds an identity token.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from layerstore.auth import Credentials
from layerstore.lazylog import Logger
from pybuild.errors import RegistryError

log = Logger(__name__)

# Tokens without expires_in live 60 s (token spec); refresh a little before they expire.
DEFAULT_TOKEN_SECONDS = 60
EXPIRY_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a WWW-Authenticate value, with parameter names lower-cased and quoted
    values unescaped. Unparseable trailing text ends the parse rather than raising."""
    out: list[Challenge] = []
    s, i, n = header, 0, len(header)

    def skip_ws(j: int) -> int:
        while j < n and s[j] in " \t,":
            j += 1
        return j

    def token(j: int) -> tuple[str, int]:
        k = j
        while k < n and s[k] not in " \t,=\"":
            k += 1
        return s[j:k], k

    i = skip_ws(i)
    while i < n:
        scheme, i = token(i)
        if not scheme:
            break
        params: dict[str, str] = {}
        while True:
            j = i
            while j < n and s[j] in " \t":
                j += 1
            if j < n and s[j] == ",":
                j = skip_ws(j)
            name, k = token(j)
            m = k
            while m < n and s[m] in " \t":
                m += 1
            if not name or m >= n or s[m] != "=":
                i = j  # not a parameter: the next challenge's scheme starts here
                break
            m += 1
            while m < n and s[m] in " \t":
                m += 1
            if m < n and s[m] == '"':
                value, m = _quoted(s, m)
            else:
                value, m = token(m)
            params[name.lower()] = value
            i = m
        out.append(Challenge(scheme.lower(), params))
        i = skip_ws(i)
    return out


def _quoted(s: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at s[i] == '"', unescaped, and the index after it."""
    chars: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            chars.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(chars), i + 1
        chars.append(c)
        i += 1
    return "".join(chars), i


def repository_scope(repo: str, *actions: str) -> str:
    """`repository:library/busybox:pull,push`"""
    return f"repository:{repo}:{','.join(actions)}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Union the actions of scopes naming the same resource; sorted, so equal sets compare equal."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        kind_name, sep, actions = scope.rpartition(":")
        if not sep or not kind_name:
            merged.setdefault(scope, set())
            continue
        merged.setdefault(kind_name, set()).update(a for a in actions.split(",") if a)
    return tuple(sorted(f"{k}:{','.join(sorted(a))}" if a else k for k, a in merged.items()))


def covers(held: Iterable[str], wanted: Iterable[str]) -> bool:
    """True when the scopes `held` grant every action of `wanted`."""
    have = {s.rpartition(":")[0]: set(s.rpartition(":")[2].split(",")) for s in merge_scopes(held)}
    for s in merge_scopes(wanted):
        name, _, actions = s.rpartition(":")
        if not set(actions.split(",")) <= have.get(name, set()):
            return False
    return True


@dataclass(frozen=True)
class TokenResponse:
    token: str
    expires_at: float


# (method, url, headers, body) -> (status, headers, body)
Fetch = Callable[[str, str, dict[str, str], bytes | None], tuple[int, dict[str, str], bytes]]


class Authenticator:
    """What one registry client knows about authenticating to one registry. Thread-safe.

    `header(scopes)` is the Authorization value to send (None before any challenge was seen);
    `answer(challenges, scopes, sent)` learns from a 401 and returns True when a retry may succeed
    (a new token or newly sent credentials), False when retrying would be pointless.
    """

    def __init__(self, registry: str, credentials: Credentials | None, fetch: Fetch) -> None:
        self.registry = registry
        self.credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        self._scheme: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: list[tuple[tuple[str, ...], TokenResponse]] = []
        self._scopes_seen: set[str] = set()

    @property
    def scheme(self) -> str | None:
        return self._scheme

    def header(self, scopes: Iterable[str]) -> str | None:
        with self._lock:
            if self._scheme == "basic" and self.credentials is not None:
                return _basic(self.credentials)
            if self._scheme == "bearer":
                tok = self._cached(tuple(scopes))
                if tok is not None:
                    return f"Bearer {tok}"
                if self._challenge is not None:
                    return f"Bearer {self._new_token(tuple(scopes))}"
        return None

    def learn(self, challenges: list[Challenge]) -> None:
        """Remember the scheme a registry asked for (from GET /v2/), fetching nothing yet."""
        by_scheme = {c.scheme: c for c in challenges}
        with self._lock:
            if "bearer" in by_scheme and "realm" in by_scheme["bearer"].params:
                self._scheme, self._challenge = "bearer", by_scheme["bearer"]
            elif "basic" in by_scheme:
                self._scheme = "basic"

    def answer(self, challenges: list[Challenge], scopes: Iterable[str], sent: str | None) -> bool:
        by_scheme = {c.scheme: c for c in challenges}
        with self._lock:
            if "bearer" in by_scheme and "realm" in by_scheme["bearer"].params:
                c = by_scheme["bearer"]
                self._scheme, self._challenge = "bearer", c
                wanted = tuple(scopes) + c.scopes
                if sent and sent.startswith("Bearer ") and self._cached(wanted) == sent[7:]:
                    # The token we sent covered these scopes and was refused: the registry says no.
                    self._tokens = [t for t in self._tokens if t[1].token != sent[7:]]
                    return False
                self._new_token(wanted)
                return True
            if "basic" in by_scheme:
                self._scheme = "basic"
                return self.credentials is not None and sent != _basic(self.credentials)
        return False

    def _cached(self, scopes: tuple[str, ...]) -> str | None:
        now = time.time()
        self._tokens = [t for t in self._tokens if t[1].expires_at > now]
        for held, tok in self._tokens:
            if covers(held, scopes):
                return tok.token
        return None

    def _new_token(self, scopes: tuple[str, ...]) -> str:
        # Ask for everything this client has needed so far, so one token serves a whole push.
        self._scopes_seen.update(scopes)
        wanted = merge_scopes(self._scopes_seen)
        if self._challenge is None:
            raise RegistryError(f"{self.registry}: no Bearer challenge to answer")
        tok = fetch_token(self._challenge, wanted, self.credentials, self._fetch, self.registry)
        self._tokens.append((wanted, tok))
        return tok.token


def _basic(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def fetch_token(
    challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None, fetch: Fetch, registry: str
) -> TokenResponse:
    """Get a Bearer token for `scopes` from the challenge's realm (distribution token spec)."""
    realm = challenge.params["realm"]
    service = challenge.params.get("service")
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query += [("scope", s) for s in scopes]
    headers = {"Accept": "application/json"}
    if creds is not None and creds.identity_token:
        form = query + [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                        ("client_id", "pybuild")]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        status, _, body = fetch("POST", realm, headers, urllib.parse.urlencode(form).encode())
    else:
        if creds is not None:
            headers["Authorization"] = _basic(creds)
        sep = "&" if "?" in realm else "?"
        url = realm + (sep + urllib.parse.urlencode(query) if query else "")
        status, _, body = fetch("GET", url, headers, None)
    log.debug("token from %s for %s: HTTP %d", realm, scopes, status)
    if status in (401, 403):
        who = f"as {creds.username}" if creds is not None else "anonymously"
        raise RegistryError(
            f"{registry}: the token service refused access {who} (HTTP {status})",
            status=status, code="UNAUTHORIZED",
            hint=f"pybuild login {registry}" if creds is None else "check the user name and password",
        )
    if status != 200:
        raise RegistryError(f"{registry}: token service {realm} answered HTTP {status}", status=status)
    try:
        doc = json.loads(body)
        token = doc.get("token") or doc.get("access_token")
        expires = int(doc.get("expires_in") or DEFAULT_TOKEN_SECONDS)
    except (ValueError, AttributeError, TypeError):
        token = None
        expires = 0
    if not isinstance(token, str) or not token:
        raise RegistryError(f"{registry}: token service {realm} returned no token", status=status)
    return TokenResponse(token, time.time() + max(expires - EXPIRY_MARGIN_SECONDS, 1))
