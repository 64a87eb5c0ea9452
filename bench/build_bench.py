#!/usr/bin/env python3
"""Build speed and memory, side by side with `buildah bud --layers` in the same run.

    sudo .venv/bin/python bench/build_bench.py [--cases tiny,steps30,...] [--no-buildah]

Cases (the issue's list): a tiny build; 30 sequential steps; a RUN writing 20,000 small files;
a RUN writing 512 MiB; COPY of 5,000 files / 200 MB; a multi-stage build; a later RUN deleting
earlier files. For each: a cold build (empty cache), a fully cached rebuild, and a rebuild after
one late source edit (a file copied by the last steps). Both tools build the same Buildfile and
context on the same busybox files (pybuild's bootstrap image, copied into buildah's storage with
skopeo), buildah as ../shared/reference/peer-tools.md says (`--isolation chroot --layers`).

Targets, checked and printed: every cold build no slower than buildah's; the 30-step build under
0.4x buildah's time; every fully cached rebuild under 0.5 s; pybuild's peak memory (largest
resident set of pybuild and what it waited for) under 150 MB. Exits 1 if a target is missed.
Everything lives in a temporary directory that is removed at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PYBUILD = [sys.executable, "-m", "pybuild"]
COLD_RATIO = 1.0
STEPS30_RATIO = 0.4
CACHED_TARGET = 0.5
MEMORY_TARGET_MB = 150

LATE = "COPY late.txt /late.txt\nRUN cat /late.txt > /late-copy\n"


@dataclass(frozen=True)
class Case:
    name: str
    buildfile: str
    make_context: str = ""  # a shell snippet run in the context directory


def cases() -> list[Case]:
    steps = "".join(f"RUN echo step {i} >> /steps\n" for i in range(30))
    return [
        Case("tiny", "FROM busybox\nRUN echo hello > /hello\n" + LATE),
        Case("steps30", "FROM busybox\n" + steps + LATE),
        Case(
            "files20k",
            "FROM busybox\nRUN mkdir /many && cd /many && for d in $(seq 100); do mkdir $d; "
            "for f in $(seq 200); do echo $d-$f > $d/$f; done; done\n" + LATE,
        ),
        Case("big512m", "FROM busybox\nRUN head -c 536870912 /dev/urandom > /big\n" + LATE),
        Case(
            "copy5k",
            "FROM busybox\nCOPY data /data\n" + LATE,
            "mkdir data && python3 -c \"import os\nfor i in range(5000):\n d='data/%02d' % (i % 50)\n"
            " os.makedirs(d, exist_ok=True)\n open(f'{d}/f{i}', 'wb').write(os.urandom(40000))\"",
        ),
        Case(
            "multistage",
            "FROM busybox AS build\nRUN mkdir /out && for i in $(seq 200); do echo $i > /out/$i; done\n"
            "FROM busybox AS test\nCOPY --from=build /out /out\nRUN ls /out | wc -l\n"
            "FROM busybox\nCOPY --from=build /out /app\n" + LATE,
        ),
        Case(
            "delete",
            "FROM busybox\nRUN mkdir /tmpdata && head -c 67108864 /dev/urandom > /tmpdata/blob && cp -r /bin /tmpdata/bin\n"
            "RUN rm -rf /tmpdata\n" + LATE,
        ),
    ]


class Runner:
    def __init__(self, tmp: Path, buildah: bool) -> None:
        self.tmp = tmp
        self.store = tmp / "pybuild-store"
        self.buildah = buildah
        self.bstore = tmp / "buildah"

    def setup(self) -> None:
        subprocess.run([*PYBUILD, "--root", str(self.store), "bootstrap", "busybox"], check=True, capture_output=True)
        if self.buildah:
            # the store is an OCI layout; gzip layers for the widest compatibility
            oci = self.tmp / "busybox-oci"
            subprocess.run(
                [*PYBUILD, "--root", str(self.store), "save", "--format", "oci-dir", "--compression", "gzip", "-o", str(oci), "busybox"],
                check=True,
                capture_output=True,
            )
            source = f"oci:{oci}:busybox:latest"
            dest = f"containers-storage:[overlay@{self.bstore}/root+{self.bstore}/run]docker.io/library/busybox:latest"
            subprocess.run(["skopeo", "copy", "-q", source, dest], check=True, capture_output=True)

    def pybuild(self, ctx: Path, tag: str) -> tuple[float, float]:
        return timed([*PYBUILD, "--root", str(self.store), "build", "--progress", "quiet", "-t", tag, str(ctx)])

    def buildah_bud(self, ctx: Path, tag: str) -> tuple[float, float]:
        return timed(
            [
                "buildah", "--root", str(self.bstore / "root"), "--runroot", str(self.bstore / "run"),
                "--storage-driver", "overlay", "bud", "--isolation", "chroot", "--layers", "-q",
                "-f", str(ctx / "Buildfile"), "-t", tag, str(ctx),
            ]
        )  # fmt: skip


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the command or anything it waited for), the peak as
    GNU time measures it for that one command."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-q", "-o", report.name, "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")
        text = report.read().strip().splitlines()
    return elapsed, int(text[-1]) / 1024 if text and text[-1].isdigit() else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(c.name for c in cases()))
    ap.add_argument("--no-buildah", action="store_true", help="measure pybuild alone")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    compileall.compile_dir(PROJECT, quiet=1, rx=__import__("re").compile(r"\.venv|/tests/"))
    use_buildah = not args.no_buildah and shutil.which("buildah") is not None and shutil.which("skopeo") is not None
    wanted = set(args.cases.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="build-bench-"))
    failures: list[str] = []
    try:
        runner = Runner(tmp, use_buildah)
        runner.setup()
        print(f"{'case':<11} {'phase':<8} {'pybuild':>9} {'buildah':>9} {'ratio':>6} {'pyb MB':>7}")
        for case in cases():
            if case.name not in wanted:
                continue
            ctx = tmp / "ctx" / case.name
            ctx.mkdir(parents=True)
            (ctx / "Buildfile").write_text(case.buildfile)
            (ctx / "late.txt").write_text("one\n")
            if case.make_context:
                subprocess.run(["sh", "-c", case.make_context], cwd=ctx, check=True)
            for phase in ("cold", "cached", "edit"):
                if phase == "edit":
                    (ctx / "late.txt").write_text("two\n")
                tag = f"{case.name}:{phase}"
                pyb, mem = runner.pybuild(ctx, tag)
                other = runner.buildah_bud(ctx, tag)[0] if use_buildah else float("nan")
                ratio = pyb / other if use_buildah else float("nan")
                print(f"{case.name:<11} {phase:<8} {pyb:>8.3f}s {other:>8.3f}s {ratio:>6.2f} {mem:>7.1f}", flush=True)
                if phase == "cold" and use_buildah and pyb > other * COLD_RATIO:
                    failures.append(f"{case.name}: cold build {pyb:.2f} s is slower than buildah's {other:.2f} s")
                if phase == "cold" and case.name == "steps30" and use_buildah and pyb > other * STEPS30_RATIO:
                    failures.append(f"steps30: {pyb:.2f} s is not under {STEPS30_RATIO}x buildah's {other:.2f} s")
                if phase == "cached" and pyb > CACHED_TARGET:
                    failures.append(f"{case.name}: cached rebuild {pyb:.2f} s is not under {CACHED_TARGET} s")
                if mem == mem and mem > MEMORY_TARGET_MB:
                    failures.append(f"{case.name} {phase}: peak memory {mem:.0f} MB is over {MEMORY_TARGET_MB} MB")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print()
    for failure in failures:
        print(f"MISSED: {failure}")
    if not failures:
        print("all targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
