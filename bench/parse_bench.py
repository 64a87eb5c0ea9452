#!/usr/bin/env python3
"""Parser speed figures (printed, never asserted): `pybuild parse` wall time on a 1,000-instruction
Buildfile (interpreter start-up included; the target is under 0.3 s), and in-process parse times
for a 10 MB Buildfile and for 100,000 continuation lines (linear time: doubling the size should
about double the time).

Run: .venv/bin/python bench/parse_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

INSTRUCTION_MIX = [
    'RUN --mount=type=cache,target=/root/.cache apt-get install -y "pkg-{i}" && echo done',
    "COPY --chown=app:app --chmod=0644 src/{i}/ /app/src/{i}/",
    'ENV VAR_{i}="value {i}" OTHER_{i}=x',
    'LABEL org.example.item{i}="label {i}"',
    'CMD ["/app/bin/run", "--item", "{i}"]',
    "ARG A{i}=default-{i}",
    "WORKDIR /app/{i}",
    "RUN echo line {i} \\\n    && echo continued {i}",
    "EXPOSE {i}/tcp",
    "HEALTHCHECK --interval=30s CMD curl -f http://localhost/{i}",
]


def thousand_instructions() -> str:
    lines = ["# syntax=docker/dockerfile:1", "FROM busybox AS base"]
    lines += [INSTRUCTION_MIX[i % len(INSTRUCTION_MIX)].format(i=i) for i in range(999)]
    return "\n".join(lines) + "\n"


def cli_wall(path: Path, runs: int) -> list[float]:
    exe = [sys.executable, "-m", "pybuild", "parse", "-f", str(path)]
    subprocess.run(exe, capture_output=True, check=False)  # warm the page cache and the grammar cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(exe, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(proc.stderr.decode())
    return times


def timed(label: str, text: str) -> float:
    import parser
    from pybuild.errors import ParseErrors

    start = time.perf_counter()
    try:
        result = f"{len(parser.parse_buildfile(text).stages[0].instructions)} instructions"
    except ParseErrors as e:
        result = f"{len(e.errors)} error(s): {e.errors[0].reason[:60]}"
    elapsed = time.perf_counter() - start
    print(f"  {label:<44} {len(text) / 1e6:6.1f} MB  {elapsed:7.3f} s  ({result})")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    os.chdir(PROJECT)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Buildfile"
        path.write_text(thousand_instructions())
        times = cli_wall(path, args.runs)
        print(f"pybuild parse, 1,000 instructions ({args.runs} runs): median {statistics.median(times):.3f} s, "
              f"best {min(times):.3f} s, worst {max(times):.3f} s (target < 0.300 s)")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pybuild", "--help"], capture_output=True, check=True)
        print(f"pybuild --help: {time.perf_counter() - start:.3f} s")

    print("in-process parse_buildfile (linear time: the x2 rows should take about twice as long):")
    for scale in (1, 2):
        body = "RUN echo " + ("0123456789 " * 9) + "\\\n"
        n = 50_000 * scale
        timed(f"{n:,} continuation lines", "FROM scratch\n" + body * n + "  done\n")
    for scale in (1, 2):
        n = 5_000_000 * scale
        big = "FROM scratch\nRUN " + "\\\n".join("x" * 60_000 for _ in range(n // 60_000)) + "\n"
        timed(f"{n / 1e6:.0f} MB shell-form RUN in 60 KB lines", big)
    for scale in (1, 2):
        n = 50_000 * scale
        many = "FROM scratch\n" + "".join(f'ENV K{i}="v {i}" L{i}=w\n' for i in range(n))
        timed(f"{n:,} ENV lines", many)
    for scale in (1, 2):
        n = 200_000 * scale
        items = ", \\\n".join(", ".join(['"arg"'] * 100) for _ in range(n // 100))
        timed(f"exec-form CMD of {n:,} items over {n // 100:,} lines", f"FROM scratch\nCMD [{items}]\n")
    for scale in (1, 2):
        n = 20_000 * scale
        heredoc = "FROM scratch\nRUN <<EOF\n" + "echo line\n" * n + "EOF\n"
        timed(f"heredoc of {n:,} lines", heredoc)


if __name__ == "__main__":
    main()
