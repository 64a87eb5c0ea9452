"""How the CLI shows things to people, as the docker CLI does: sizes, durations, tables, the `ps`
columns. Pure functions, for the command modules (pybuild/commands/*.py) to print what they return:
formatting for humans is the CLI's job, so the layer store and the runner return values and never
format them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.state import ContainerState

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float) -> str:
    """Docker's HumanSizeWithPrecision(size, 3): decimal units, three significant digits."""
    i = 0
    while size >= 1000 and i < len(_SIZE_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{_SIZE_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration ("Less than a second", "About a minute", "2 hours", "3 weeks"), as
    `docker ps` and `docker images` use it."""
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
    hours = int(seconds / 3600 + 0.5)  # Go: int(d.Hours() + 0.5)
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


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the header first) laid out as the docker CLI's tabwriter does (min width 10, padding
    3): every cell but a row's last is padded to its column's width. No trailing newline."""
    if not rows:
        return ""
    cols = len(rows[0])
    widths = [max(10, max(len(r[i]) for r in rows) + 3) for i in range(cols - 1)]
    return "\n".join("".join(r[i].ljust(widths[i]) for i in range(cols - 1)) + r[-1] for r in rows)


def ellipsis(text: str, width: int) -> str:
    """Truncate to `width` characters, the last one an ellipsis (docker's formatter.Ellipsis)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """Go's strconv.Quote for the printable text docker ps shows."""
    return json.dumps(text, ensure_ascii=False)


# the fields of `docker ps --format` and their column headers; the columns docker ps shows
PS_FIELDS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
             "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Names": "NAMES",
             "Networks": "NETWORKS"}
PS_COLUMNS = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")
PS_HEADER = tuple(PS_FIELDS[f] for f in PS_COLUMNS)


def status_text(s: ContainerState, now: float) -> str:
    """The STATUS column: `Up 5 seconds`, `Up 2 minutes (Paused)`, `Exited (0) 3 hours ago`,
    `Created`; an exit nobody could record shows as `Exited (unknown)`."""
    from runner import state

    if s.status in (state.RUNNING, state.PAUSED):
        started = state.parse_time(s.started_at) or now
        text = "Up " + human_duration(now - started)
        return text + " (Paused)" if s.status == state.PAUSED else text
    if s.status == state.EXITED:
        code = "unknown" if s.exit_code in (None, state.UNKNOWN_EXIT) else str(s.exit_code)
        finished = state.parse_time(s.finished_at)
        return f"Exited ({code}) {human_duration(now - finished)} ago" if finished else f"Exited ({code})"
    return "Created"


def ps_command(argv: Sequence[str]) -> str:
    """The COMMAND of `docker ps` (moby daemon/list.go): the path, then the arguments, each one
    holding a space put in single quotes: `sh -c 'echo hi; sleep 1'`."""
    return " ".join([*argv[:1], *(f"'{a}'" if " " in a else a for a in argv[1:])])


def ps_fields(s: ContainerState, now: float, *, no_trunc: bool = False) -> dict[str, str]:
    """One container as the fields of `docker ps --format` (PS_FIELDS)."""
    from runner import state

    command = ps_command(s.config.argv)
    created = state.parse_time(s.created)
    return {
        "ID": s.id if no_trunc else s.short_id,
        "Image": s.image,
        "Command": go_quote(command if no_trunc else ellipsis(command, 20)),
        "CreatedAt": go_time(created) if created is not None else "",
        "RunningFor": human_duration(now - (created or now)) + " ago",
        "Ports": "",
        "State": s.status,
        "Status": status_text(s, now),
        "Names": s.name,
        "Networks": s.config.network,
    }


def ps_rows(states: Sequence[ContainerState], now: float, *, no_trunc: bool = False) -> list[tuple[str, ...]]:
    """The rows of `docker ps` for `states` (without the header, PS_HEADER)."""
    return [tuple(f[k] for k in PS_COLUMNS) for f in (ps_fields(s, now, no_trunc=no_trunc) for s in states)]


def go_time(epoch: float) -> str:
    """A time as Go's time.Time.String() prints it in the local zone (`2024-05-06 07:08:09 +0000
    UTC`): the CreatedAt of docker's --format fields."""
    from datetime import datetime

    return datetime.fromtimestamp(int(epoch)).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")
