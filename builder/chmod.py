"""`COPY --chmod` values: octal (`0755`) or symbolic (`u=rwX,go=rX`, `+x`, `g=u`), F71.

BuildKit parses the symbolic form with a Go port of BSD's setmode(3) (tonistiigi/dchapes-mode)
and applies it with a umask of 0; the rules here are the same: clauses separated by `,`, each
`[ugoa]*` followed by one or more `[-+=][rwxXst]*` or `[-+=][ugo]` operations, `X` adding execute
permission only to directories and to files that already have some execute bit (and only with
`+`: `u=rwX` sets no execute bit, unlike GNU chmod), no `who` meaning all of u, g and o.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybuild.errors import PybuildError

S_ISUID, S_ISGID, S_ISVTX = 0o4000, 0o2000, 0o1000
_STANDARD = S_ISUID | S_ISGID | 0o777
_ALL = 0o7777  # the mask with a umask of 0
_USER, _GROUP, _OTHER = 0o700, 0o070, 0o007


class ChmodError(PybuildError):
    """A --chmod value that is neither octal up to 07777 nor a valid symbolic mode."""


@dataclass(frozen=True)
class _Cmd:
    op: str  # '+', '-', 'X' (conditional +), or 'u'/'g'/'o' (copy bits from that class)
    bits: int
    set_: bool = False  # for u/g/o: set the copied bits
    clear: bool = False  # for u/g/o: clear first
    targets: tuple[int, ...] = ()  # for u/g/o: the shifts (6, 3, 0) of the classes to change


@dataclass(frozen=True)
class Chmod:
    """A parsed --chmod; `text` is the value as written (it goes into history and cache keys)."""

    text: str
    octal: int | None
    cmds: tuple[_Cmd, ...] = ()

    def apply(self, mode: int, *, is_dir: bool) -> int:
        """The permission bits (with setuid, setgid, sticky) for an entry whose mode is `mode`."""
        if self.octal is not None:
            return self.octal
        original = mode & _ALL
        new = original
        for c in self.cmds:
            if c.op == "+":
                new |= c.bits
            elif c.op == "-":
                new &= ~c.bits
            elif c.op == "X":
                if original & 0o111 or is_dir:
                    new |= c.bits
            else:
                shift = {"u": 6, "g": 3, "o": 0}[c.op]
                value = (new >> shift) & 0o7
                if c.clear:
                    clear_value = 0o7 if c.set_ else value
                    for t in c.targets:
                        new &= ~((clear_value << t) & c.bits)
                if c.set_:
                    for t in c.targets:
                        new |= (value << t) & c.bits
        return new & _ALL


def parse_chmod(text: str, *, umask: int = 0) -> Chmod:
    """Parse a --chmod value as BuildKit does (umask 0); ChmodError with BuildKit's message
    otherwise. A `who`-less clause is limited by `umask`, as in chmod(1)."""
    octal_error = ChmodError(f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777")
    if text and all(c in "0123456789" for c in text):
        try:
            value = int(text, 8)
        except ValueError:
            raise octal_error from None
        if value > 0o7777:
            raise octal_error
        return Chmod(text, value)
    cmds = _parse_symbolic(text, _ALL & ~umask)
    return Chmod(text, None, tuple(cmds))


def _parse_symbolic(text: str, mask: int) -> list[_Cmd]:
    syntax = ChmodError(f"invalid chmod parameter: '{text}': invalid syntax")
    if not text:
        raise syntax
    cmds: list[_Cmd] = []
    s = text
    equal_done = False
    while True:
        who = 0
        while s and s[0] in "augo":
            who |= {"a": _STANDARD, "u": S_ISUID | _USER, "g": S_ISGID | _GROUP, "o": _OTHER}[s[0]]
            s = s[1:]
        while True:  # one or more operations for this `who`
            if not s or s[0] not in "+-=":
                raise syntax
            op, s = s[0], s[1:]
            if op == "=":
                equal_done = False
            who &= ~S_ISVTX
            perm = perm_x = 0
            while True:
                ch = s[0] if s else ""
                if ch == "r":
                    perm |= 0o444
                elif ch == "w":
                    perm |= 0o222
                elif ch == "x":
                    perm |= 0o111
                elif ch == "X":
                    if op == "+":
                        perm_x = 0o111
                elif ch == "s":
                    if who == 0 or who & ~_OTHER:
                        perm |= S_ISUID | S_ISGID
                elif ch == "t":
                    if who == 0 or who & ~_OTHER:
                        who |= S_ISVTX
                        perm |= S_ISVTX
                elif ch in ("u", "g", "o"):
                    if perm:
                        cmds.extend(_add(op, who, perm, mask))
                        perm = 0
                    if op == "=":
                        equal_done = True
                    if perm_x:
                        cmds.extend(_add("X", who, perm_x, mask))
                        perm_x = 0
                    cmds.append(_copy(ch, who, op, mask))
                else:
                    if perm or (op == "=" and not equal_done):
                        if op == "=":
                            equal_done = True
                        cmds.extend(_add(op, who, perm, mask))
                        perm = 0
                    if perm_x:
                        cmds.extend(_add("X", who, perm_x, mask))
                        perm_x = 0
                    break
                s = s[1:]
            if not s or s[0] == ",":
                break
        if not s:
            return cmds
        s = s[1:]  # the ','
        if not s:
            raise syntax


def _add(op: str, who: int, perm: int, mask: int) -> list[_Cmd]:
    out = []
    if op == "=":
        out.append(_Cmd("-", who if who else _STANDARD))
        op = "+"
    out.append(_Cmd(op, (who & perm) if who else (mask & perm)))
    return out


def _copy(source: str, who: int, op: str, mask: int) -> _Cmd:
    if who:
        targets = tuple(t for t, bit in ((6, 0o400), (3, 0o040), (0, 0o004)) if who & bit)
        bits = 0xFFFF
    else:
        targets = (6, 3, 0)
        bits = mask
    return _Cmd(source, bits, set_=op in "+=", clear=op in "-=", targets=targets)
