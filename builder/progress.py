"""What a build reports while it runs: numbered steps that start, are found in the cache,
print output, enter a phase (committing a layer), finish or fail, and free-form lines.

The builder only calls a `Reporter`; showing those events to people (Docker's `plain` lines,
one JSON object per line, a live display on a terminal) is the command line's job:
`pybuild/progress.py`. The base class reports nothing (`--progress quiet`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Step:
    """One displayed step: `number` is the `#N` of the build, `name` e.g. `[2/7] RUN make`."""

    number: int
    name: str
    started: float = field(default_factory=time.monotonic)
    reasons: list[str] = field(default_factory=list)  # why the cache missed (--explain-cache)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Reporter:
    """The interface; this base class reports nothing (quiet)."""

    def start(self, step: Step) -> None: ...

    def cached(self, step: Step) -> None: ...

    def output(self, step: Step, stream: str, data: bytes) -> None: ...

    def phase(self, step: Step, what: str, size: int | None = None) -> None: ...

    def done(self, step: Step) -> None: ...

    def error(self, step: Step, message: str) -> None: ...

    def info(self, message: str) -> None: ...

    def close(self) -> None: ...
