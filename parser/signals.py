"""STOPSIGNAL values: moby/sys/signal's ParseSignal for Linux."""

from __future__ import annotations

_NAMES = {
    "ABRT": 6, "ALRM": 14, "BUS": 7, "CHLD": 17, "CLD": 17, "CONT": 18, "FPE": 8, "HUP": 1, "ILL": 4,
    "INT": 2, "IO": 29, "IOT": 6, "KILL": 9, "PIPE": 13, "POLL": 29, "PROF": 27, "PWR": 30, "QUIT": 3,
    "SEGV": 11, "STKFLT": 16, "STOP": 19, "SYS": 31, "TERM": 15, "TRAP": 5, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "USR1": 10, "USR2": 12, "VTALRM": 26, "WINCH": 28, "XCPU": 24, "XFSZ": 25,
    "RTMIN": 34, "RTMAX": 64,
}
_NAMES.update({f"RTMIN+{i}": 34 + i for i in range(1, 16)})
_NAMES.update({f"RTMAX-{i}": 64 - i for i in range(1, 15)})


def parse_signal(text: str) -> int:
    """The signal number of `9`, `KILL`, `SIGKILL` or `sigkill`; raises ValueError("invalid
    signal: ...") for zero, negative numbers and unknown names."""
    body = text[1:] if text[:1] == "+" else text
    if body.isdecimal() and body.isascii():
        number = int(body)
        if number > 0:
            return number
        raise ValueError(f"invalid signal: {text}")
    name = text.upper()
    found = _NAMES.get(name[3:] if name.startswith("SIG") else name)
    if found is None:
        raise ValueError(f"invalid signal: {text}")
    return found
