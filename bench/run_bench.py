#!/usr/bin/env python3
"""Container start-up speed, side by side with podman in the same run.

    sudo .venv/bin/python bench/run_bench.py [-n 30]

Measures the wall time of
- `pybuild run --rm busybox true` (target: median < 0.25 s, and no slower than podman),
- `podman run --rm --network none busybox true` on the same busybox files, podman configured as
  ../shared/reference/peer-tools.md says (runc, cgroupfs, file locks, private root),
- `pybuild exec C true` into a running container (target: median < 0.15 s),
alternating the tools run by run so that both see the same machine load. Prints medians,
quartiles and whether each target is met; exits 1 if one is missed. Everything it makes lives
in a temporary directory that is removed at the end.

Python byte-code is compiled first (`compileall`), as an installed pybuild would have it:
PYTHONDONTWRITEBYTECODE in some environments would otherwise make every run compile from source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PYBUILD = [sys.executable, "-m", "pybuild"] if not shutil.which("pybuild") else [shutil.which("pybuild") or "pybuild"]
RUN_TARGET = 0.25
EXEC_TARGET = 0.15

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp}"
"""


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return elapsed


def summary(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=4)
    return f"{name:<44} median {statistics.median(samples):.3f} s   (q1 {q[0]:.3f}, q3 {q[2]:.3f}, n={len(samples)})"


def setup_podman(work: Path, rootfs: Path) -> tuple[list[str], dict[str, str]] | None:
    if shutil.which("podman") is None:
        return None
    tmp = work / "podman-tmp"
    tmp.mkdir()
    conf = work / "containers.conf"
    conf.write_text(PODMAN_CONF.format(tmp=tmp))
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    podman = ["podman", "--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"), "--tmpdir", str(tmp)]
    tar = work / "busybox.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    subprocess.run([*podman, "import", str(tar), "localhost/busybox:latest"], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return podman, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="runs of each (default 30)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run_bench: needs root", file=sys.stderr)
        return 2
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(PROJECT / p) for p in ("pybuild", "runner", "layerstore"))], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="pybuild-run-bench-"))
    store = work / "store"
    pb = [*PYBUILD, "--root", str(store)]
    container = None
    podman = None
    try:
        subprocess.run([*pb, "bootstrap", "busybox"], check=True, stdout=subprocess.DEVNULL)
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2("/bin/busybox", rootfs / "bin/busybox")
        for applet in ("sh", "true"):
            os.symlink("busybox", rootfs / "bin" / applet)
        podman = setup_podman(work, rootfs)
        run_cmd = [*pb, "run", "--rm", "busybox", "true"]
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(3):  # warm caches on both sides
            timed(run_cmd)
            if podman:
                timed([*podman[0], "run", "--rm", "--network", "none", "localhost/busybox", "true"], podman[1])
        for _ in range(args.n):
            ours.append(timed(run_cmd))
            if podman:
                theirs.append(timed([*podman[0], "run", "--rm", "--network", "none", "localhost/busybox", "true"], podman[1]))
        container = subprocess.run([*pb, "run", "-d", "busybox", "sleep", "3600"], check=True, capture_output=True, text=True).stdout.strip()
        exec_cmd = [*pb, "exec", container, "true"]
        for _ in range(3):
            timed(exec_cmd)
        execs = [timed(exec_cmd) for _ in range(args.n)]
    finally:
        if container:
            subprocess.run([*pb, "rm", "-f", container], stdout=subprocess.DEVNULL)
        if podman:
            subprocess.run([*podman[0], "system", "reset", "--force"], env=podman[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

    ok = True
    print(summary("pybuild run --rm busybox true", ours))
    if theirs:
        print(summary("podman run --rm --network none busybox true", theirs))
    print(summary("pybuild exec C true", execs))
    run_median = statistics.median(ours)
    checks = [(f"run median < {RUN_TARGET} s", run_median < RUN_TARGET), (f"exec median < {EXEC_TARGET} s", statistics.median(execs) < EXEC_TARGET)]
    if theirs:
        checks.append(("run no slower than podman (median)", run_median <= statistics.median(theirs)))
    for what, met in checks:
        print(f"{'met ' if met else 'MISSED'}  {what}")
        ok &= met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
