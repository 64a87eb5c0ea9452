"""Build progress on the terminal, as Docker shows it: `plain` for logs, `json` for tools,
`quiet`, and a live display on a terminal (`auto` picks it when the output is a tty). The
builder reports events to a `builder.progress.Reporter`; these render them. Why a step missed
the cache is always in `plain` (a `cache miss:` line) and `json` (`cache_miss`), and on the
live display with `--explain-cache`.

plain (BuildKit's `--progress=plain`):
    #3 [build 2/5] RUN make
    #3 0.412 cc -o app main.c
    #3 DONE 1.3s
    #4 [build 3/5] COPY app /bin/app
    #4 CACHED
json: one object per line: {"step":3,"name":"[build 2/5] RUN make","event":"start"|"output"|
"cached"|"done"|"error", ...}; output events carry `stream` and `data`, done events `seconds`.
The terminal display keeps one line per step, redraws the running one with its time (and a bar
while a layer is being committed) and shows the last lines of a RUN's output under it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import TextIO

from builder.progress import Reporter, Step
from pybuild.formatting import human_size

MODES = ("auto", "plain", "json", "quiet", "tty")


class _Lines:
    """Splits output chunks into lines per (step, stream), keeping partial lines."""

    def __init__(self) -> None:
        self._partial: dict[tuple[int, str], bytes] = {}

    def feed(self, step: Step, stream: str, data: bytes) -> list[str]:
        key = (step.number, stream)
        buf = self._partial.get(key, b"") + data
        *lines, rest = buf.split(b"\n")
        self._partial[key] = rest
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]

    def flush(self, step: Step) -> list[str]:
        out = []
        for key in [k for k in self._partial if k[0] == step.number]:
            rest = self._partial.pop(key)
            if rest:
                out.append(rest.decode("utf-8", "replace"))
        return out


class PlainReporter(Reporter):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines = _Lines()
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, step: Step) -> None:
        self._write(f"#{step.number} {step.name}")
        if step.reasons:
            self._write(f"#{step.number} cache miss: {'; '.join(step.reasons)}")

    def cached(self, step: Step) -> None:
        self._write(f"#{step.number} {step.name}")
        self._write(f"#{step.number} CACHED")

    def output(self, step: Step, stream: str, data: bytes) -> None:
        for line in self._lines.feed(step, stream, data):
            self._write(f"#{step.number} {step.elapsed():.3f} {line}")

    def phase(self, step: Step, what: str, size: int | None = None) -> None:
        suffix = f" {human_size(size)}" if size is not None else ""
        self._write(f"#{step.number} {what}{suffix}")

    def done(self, step: Step) -> None:
        for line in self._lines.flush(step):
            self._write(f"#{step.number} {step.elapsed():.3f} {line}")
        self._write(f"#{step.number} DONE {step.elapsed():.1f}s")

    def error(self, step: Step, message: str) -> None:
        for line in self._lines.flush(step):
            self._write(f"#{step.number} {step.elapsed():.3f} {line}")
        self._write(f"#{step.number} ERROR: {message}")

    def info(self, message: str) -> None:
        self._write(message)


class JsonReporter(Reporter):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def _emit(self, step: Step | None, event: str, **fields: object) -> None:
        doc: dict[str, object] = {"event": event, "time": round(time.time(), 3)}
        if step is not None:
            doc.update(step=step.number, name=step.name)
        doc.update(fields)
        with self._lock:
            self.stream.write(json.dumps(doc, ensure_ascii=False) + "\n")
            self.stream.flush()

    def start(self, step: Step) -> None:
        self._emit(step, "start", **({"cache_miss": step.reasons} if step.reasons else {}))

    def cached(self, step: Step) -> None:
        self._emit(step, "cached")

    def output(self, step: Step, stream: str, data: bytes) -> None:
        self._emit(step, "output", stream=stream, data=data.decode("utf-8", "replace"))

    def phase(self, step: Step, what: str, size: int | None = None) -> None:
        self._emit(step, "phase", phase=what, **({"bytes": size} if size is not None else {}))

    def done(self, step: Step) -> None:
        self._emit(step, "done", seconds=round(step.elapsed(), 3))

    def error(self, step: Step, message: str) -> None:
        self._emit(step, "error", message=message)

    def info(self, message: str) -> None:
        self._emit(None, "info", message=message)


class TtyReporter(Reporter):
    """A live display: finished steps scroll up as plain lines; the running step is redrawn in
    place every 100 ms with its time, its last output lines, and a bar while committing."""

    TAIL = 6
    WIDTH = 24

    def __init__(self, stream: TextIO, *, explain: bool = False) -> None:
        self.stream = stream
        self.explain = explain  # --explain-cache: say under each step that ran why it missed
        self._lines = _Lines()
        self._tail: deque[str] = deque(maxlen=self.TAIL)
        self._current: Step | None = None
        self._phase: str | None = None
        self._drawn = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                if self._current is not None:
                    self._redraw()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _redraw(self) -> None:
        step = self._current
        if step is None:
            return
        self._clear()
        lines = [f"=> {step.name} {step.elapsed():.1f}s"]
        if self._phase is not None:
            pos = int(step.elapsed() * 8) % (2 * self.WIDTH - 2)
            pos = pos if pos < self.WIDTH else 2 * self.WIDTH - 2 - pos
            bar = "".join("=" if i == pos else " " for i in range(self.WIDTH))
            lines.append(f"   [{bar}] {self._phase}")
        lines += [f"   {line[:200]}" for line in self._tail]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _finish(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._current = None
        self._phase = None
        self._tail.clear()

    def start(self, step: Step) -> None:
        with self._lock:
            self._current = step
            self._redraw()

    def cached(self, step: Step) -> None:
        with self._lock:
            self._finish(f"=> CACHED {step.name}")

    def output(self, step: Step, stream: str, data: bytes) -> None:
        with self._lock:
            self._tail.extend(self._lines.feed(step, stream, data))

    def phase(self, step: Step, what: str, size: int | None = None) -> None:
        with self._lock:
            self._phase = what + (f" {human_size(size)}" if size is not None else "")
            self._redraw()

    def done(self, step: Step) -> None:
        with self._lock:
            why = f"\n   cache miss: {'; '.join(step.reasons)}" if self.explain and step.reasons else ""
            self._finish(f"=> {step.name} {step.elapsed():.1f}s{why}")

    def error(self, step: Step, message: str) -> None:
        with self._lock:
            tail = list(self._tail)
            self._finish(f"=> ERROR {step.name} {step.elapsed():.1f}s")
            for line in tail:
                self.stream.write(f"   {line}\n")
            self.stream.write(f"   {message}\n")

    def info(self, message: str) -> None:
        with self._lock:
            self._clear()
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()
        with self._lock:
            self._clear()
            self.stream.flush()


def reporter(mode: str, stream: TextIO, *, explain: bool = False) -> Reporter:
    """The reporter for a --progress mode (`auto`: the live display on a tty, else plain)."""
    if mode == "auto":
        mode = "tty" if stream.isatty() else "plain"
    if mode == "plain":
        return PlainReporter(stream)
    if mode == "json":
        return JsonReporter(stream)
    if mode == "tty":
        return TtyReporter(stream, explain=explain)
    return Reporter()
