"""How container commands print, as the docker CLI does: `ps` columns, human durations, sizes.
Pure functions."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pybuild.errors import RuntimeError_
from runner import state
from runner.entrypoint import command_string
from runner.state import ContainerState

PS_HEADER = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, as `docker ps` uses it."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def status_text(s: ContainerState, now: float) -> str:
    """The STATUS column: `Up 5 seconds`, `Up 2 minutes (Paused)`, `Exited (0) 3 hours ago`,
    `Created`; an exit nobody could record shows as `Exited (unknown)`."""
    if s.status in (state.RUNNING, state.PAUSED):
        started = state.parse_time(s.started_at) or now
        text = "Up " + human_duration(now - started)
        return text + " (Paused)" if s.status == state.PAUSED else text
    if s.status == state.EXITED:
        code = "unknown" if s.exit_code in (None, state.UNKNOWN_EXIT) else str(s.exit_code)
        finished = state.parse_time(s.finished_at)
        return f"Exited ({code}) {human_duration(now - finished)} ago" if finished else f"Exited ({code})"
    return "Created"


def ellipsis(text: str, width: int) -> str:
    """Truncate to `width` characters, the last one an ellipsis (docker's formatter.Ellipsis)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """Go's strconv.Quote for the printable text docker ps shows."""
    return json.dumps(text, ensure_ascii=False)


def ps_rows(states: Sequence[ContainerState], now: float, *, no_trunc: bool = False) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for s in states:
        command = command_string(s.config.argv)
        rows.append(
            (
                s.id if no_trunc else s.short_id,
                s.image,
                go_quote(command if no_trunc else ellipsis(command, 20)),
                human_duration(now - (state.parse_time(s.created) or now)) + " ago",
                status_text(s, now),
                "",
                s.name,
            )
        )
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as Go's tabwriter lays them out for docker (min width 10, padding 3)."""
    cols = len(header)
    widths = [max(10, max(len(r[i]) for r in [header, *rows]) + 3) for i in range(cols - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("".join(r[i].ljust(widths[i]) for i in range(cols - 1)) + r[-1])
    return "\n".join(lines) + "\n"


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum --memory


def parse_size(text: str) -> int:
    """`512`, `64m`, `1.5g`, `2GiB` -> bytes (binary units, as docker's RAMInBytes)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise RuntimeError_(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_memory(text: str) -> int:
    value = parse_size(text)
    if value < MIN_MEMORY:
        raise RuntimeError_("minimum memory limit allowed is 6MB")
    return value
