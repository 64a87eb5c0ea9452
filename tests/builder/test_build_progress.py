"""Build progress as the command line renders it (plain, json, the live display)."""

from __future__ import annotations

import io
import json

from builder.progress import Step
from pybuild.progress import JsonReporter, PlainReporter, TtyReporter


def test_progress_formats() -> None:
    out = io.StringIO()
    r = PlainReporter(out)
    step = Step(3, "[2/2] RUN x", reasons=["variable A changed"])
    r.start(step)
    r.output(step, "stdout", b"partial")
    r.output(step, "stdout", b" line\nnext")
    r.done(step)
    lines = out.getvalue().splitlines()
    assert lines[0] == "#3 [2/2] RUN x" and lines[1] == "#3 cache miss: variable A changed"
    assert lines[2].endswith(" partial line") and lines[3].endswith(" next") and lines[4].startswith("#3 DONE ")
    out = io.StringIO()
    JsonReporter(out).cached(Step(4, "[3/3] COPY a /a"))
    assert json.loads(out.getvalue())["event"] == "cached"
    out = io.StringIO()
    tty = TtyReporter(out)
    tty.start(step)
    tty.phase(step, "committing", 2_500_000)
    tty.done(step)
    tty.close()
    assert "committing 2.5MB" in out.getvalue() and "=> [2/2] RUN x" in out.getvalue()
    assert "cache miss" not in out.getvalue()
    out = io.StringIO()
    tty = TtyReporter(out, explain=True)
    tty.start(step)
    tty.done(step)
    tty.close()
    assert "   cache miss: variable A changed\n" in out.getvalue()
