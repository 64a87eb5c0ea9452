#!/usr/bin/env python3
"""Moving a big image, side by side with the peer tools in the same run (issue 6's targets):

- `pybuild save` of an image already in the store vs `buildah push IMAGE oci-archive:` (target >= 5x);
- `pybuild push` to a local docker-registry vs `skopeo copy oci:STORE:IMAGE docker://...` (the store
  root is an OCI layout, so both read the very same blob files);
- `pybuild pull` vs `skopeo copy docker://... oci:DIR` (pybuild also decompresses every layer to
  verify its diff_id and checks its tar against the extractor's rules, which skopeo does not;
  neither unpacks the layers);
- peak RSS of each pybuild command at two image sizes (memory must not grow with the image);
- with `pull`, a pull of the image into a destination that already holds it, for both tools: what
  a pull costs whatever the image's size (start-up, the manifest, the commit), so that the rest,
  the part that grows with the image, can be compared on its own.

    python3 bench/transfer_bench.py [--mb 500] [--small-mb 100] [--layers 5] [--runs 5] [--only pull]

Each phase starts once the disk has written back what the phases before it wrote (`settle`).
Each figure is the best and the median of `--runs` runs, the tools taking turns, with the CPU time
(user + system, all threads and child processes; and the system part) and the minor page faults
beside the wall time (both grow when the VM's host has taken its free memory back, README Speed),
and the registry's own CPU time during the run: the machine may be shared, and on two cores the
registry competes with the client for them (client CPU + registry CPU close to 2 x wall means both
cores were busy). pybuild's modules are byte-compiled first, as an installed package is (pip
compiles on install; PYTHONDONTWRITEBYTECODE, set in some shells, would otherwise make every run
compile them again, ~40 ms that no user pays).

Needs root, buildah, skopeo and docker-registry. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from layerstore.store import Store  # noqa: E402
from tests.transfer.servers import Registry  # noqa: E402


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds, all threads
    system: float  # of which system
    rss: int  # peak, MiB
    faults: int = 0  # minor page faults: fresh memory, dear on a VM whose host took back free memory
    peer_cpu: float = 0.0  # user + system seconds of the watched process (the registry) meanwhile


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict[str, str] | None = None, watch: int | None = None) -> Run:
    """One command, which must succeed. Dirty pages of earlier steps are flushed first, so one
    command does not pay for another's writes. `watch`: a process (the registry) whose CPU time
    during the command is recorded too."""
    os.sync()
    peer = cpu_seconds(watch) if watch else 0.0
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    peer = cpu_seconds(watch) - peer if watch else 0.0
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_maxrss // 1024, usage.ru_minflt, peer)


@dataclass(frozen=True)
class Figures:
    """Best and median of several runs of one command."""

    runs: tuple[Run, ...]

    @property
    def best(self) -> float:
        return min(r.wall for r in self.runs)

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def cpu(self) -> float:
        return statistics.median(r.cpu for r in self.runs)

    @property
    def rss(self) -> int:
        return max(r.rss for r in self.runs)

    @property
    def system(self) -> float:
        return statistics.median(r.system for r in self.runs)

    @property
    def faults(self) -> int:
        return int(statistics.median(r.faults for r in self.runs))

    @property
    def peer_cpu(self) -> float:
        return statistics.median(r.peer_cpu for r in self.runs)

    def show(self) -> str:
        registry = f", registry {self.peer_cpu:4.2f}s" if any(r.peer_cpu for r in self.runs) else ""
        return (f"{self.best:5.2f}s best {self.median:5.2f}s median (cpu {self.cpu:4.2f}s, sys {self.system:4.2f}s, "
                f"{self.faults / 1000:.1f}k faults{registry})")


def make_image(root: Path, mb: int, layers: int, tag: str) -> None:
    """An image of `mb` MiB in `layers` layers of files of random (incompressible) and text data."""
    with Store.open(root) as store:
        parent = None
        for i in range(layers):
            work = store.mkdtemp()
            per_layer = mb * (1 << 20) // layers
            for j in range(8):
                chunk = per_layer // 8
                data = os.urandom(chunk // 2) + (b"some text that compresses %d\n" % j) * (chunk // 2 // 29)
                (work / f"file-{i}-{j}.bin").write_bytes(data)
            parent = store.commit(work, parent=parent, created_by=f"layer {i}")
        assert parent is not None
        store.tag(parent, tag)


def settle() -> None:
    """Let the disk finish writing back what earlier phases wrote (gigabytes: archives, registry
    storage) before a phase starts, so that each phase measures the same as when run alone with
    `--only`. On the VMs these figures come from, a write into the page cache while gigabytes are
    still being written back can cost several times its usual CPU time."""
    os.sync()


def best(n: int, make_cmd: Callable[[int], list[str]]) -> Figures:
    """`n` runs (each with a fresh destination)."""
    return Figures(tuple(timed(make_cmd(i)) for i in range(n)))


def alternate(n: int, work: Path, makers: list[Callable[[Any], list[str]]], *, fresh_registry: bool = False,
              registry: Registry | None = None, keep: bool = False) -> list[Figures]:
    """`n` runs of each command, the commands taking turns (in alternating order) so that they meet
    the same machine (this one's disk and memory are noisy). With `fresh_registry`, each run pushes to a new, empty registry
    (nothing can be skipped or mounted) and its maker gets the registry's host; otherwise it gets
    the run number, and what it wrote is removed afterwards (unless `keep`), so that each run
    writes afresh. The CPU time of the registry in use is recorded with each run."""
    runs: list[list[Run]] = [[] for _ in makers]
    for i in range(n):
        order = list(enumerate(makers))
        for k, make in order if i % 2 == 0 else order[::-1]:  # neither tool always meets the machine first
            if not fresh_registry:
                runs[k].append(timed(make(f"{k}-{i}"), watch=registry.proc.pid if registry else None))
                for leftover in [] if keep else work.glob(f"*-{k}-{i}"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
                continue
            reg = Registry(Path(tempfile.mkdtemp(prefix="push-registry-", dir=work)))
            try:
                runs[k].append(timed(make(reg.host), watch=reg.proc.pid))
            finally:
                reg.stop()
    return [Figures(tuple(r)) for r in runs]


def pb(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pybuild", "--root", str(root), *args]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--small-mb", type=int, default=100)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5, help="runs of each timed command")
    ap.add_argument("--only", choices=["save", "push", "pull", "rss"], action="append",
                    help="measure only this (repeatable); default: everything")
    args = ap.parse_args()
    only = set(args.only or ["save", "push", "pull", "rss"])
    for tool in ("buildah", "skopeo", "docker-registry"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    for pkg in ("pybuild", "layerstore", "builder", "parser", "runner"):
        compileall.compile_dir(HERE / pkg, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="transfer-bench-", dir="/var/tmp"))
    reg = Registry(work / "registry")
    try:
        print(f"# image sizes {args.small_mb} and {args.mb} MiB, {args.layers} layers each; "
              f"{args.runs} runs of each, taking turns; {os.cpu_count()} CPUs")
        root = work / "store"
        make_image(root, args.small_mb, args.layers, "small:1")
        make_image(root, args.mb, args.layers, "big:1")
        size = sum(f.stat().st_size for f in (root / "blobs/sha256").iterdir())
        print(f"# store blobs: {size / 2**20:.0f} MiB (zstd)")

        n = args.runs
        rss: dict[str, dict[str, int]] = {}
        for tag in ("small:1", "big:1"):
            name = tag.split(":")[0]
            if "rss" not in only:  # just put the image there for the pulls
                timed(pb(root, "push", "-q", tag, f"{reg.host}/bench/{name}:1"))
                continue
            rss.setdefault("save", {})[tag] = best(1, lambda i: pb(root, "save", tag, "-o", str(work / f"{name}-{i}.tar"))).rss
            rss.setdefault("push", {})[tag] = best(1, lambda i: pb(root, "push", "-q", tag, f"{reg.host}/bench/{name}:1")).rss
            rss.setdefault("pull", {})[tag] = best(1, lambda i: pb(work / f"pulled-{name}", "pull", "-q", f"{reg.host}/bench/{name}:1")).rss
        if "save" in only:
            settle()
            storage = ["--root", str(work / "b-root"), "--runroot", str(work / "b-run"), "--storage-driver", "vfs"]
            timed(pb(root, "save", "big:1", "-o", str(work / "seed.tar")))
            subprocess.run(["buildah", *storage, "pull", f"oci-archive:{work / 'seed.tar'}:big:1"], check=True,
                           capture_output=True)
            settle()
            # Each archive is removed after its run, as each pull's copy is: a VM whose balloon has
            # taken back its free memory makes a tool that writes into memory the page cache never
            # held pay the host's page faults, up to 3x its CPU time (README, Speed).
            save, buildah = alternate(n, work, [
                lambda i: pb(root, "save", "big:1", "-o", str(work / f"save-{i}")),
                lambda i: ["buildah", *storage, "push", "docker.io/library/big:1", f"oci-archive:{work / f'save-{i}'}:big:1"],
            ])
            print(f"save big:  pybuild {save.show()}   buildah push oci-archive: {buildah.show()}   "
                  f"speed-up {buildah.best / save.best:4.1f}x best, {buildah.median / save.median:4.1f}x median (target >= 5x)")
        if "push" in only:
            settle()
            push, skopeo_push = alternate(n, work, [
                lambda host: pb(root, "push", "-q", "big:1", f"{host}/bench/pushed:1"),
                lambda host: ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{root}:big:1", f"docker://{host}/bench/pushed:1"],
            ], fresh_registry=True)
            print(f"push big:  pybuild {push.show()}   skopeo copy {skopeo_push.show()}   "
                  f"ratio {skopeo_push.best / push.best:4.2f} best, {skopeo_push.median / push.median:4.2f} median (target >= 1)")
        if "pull" in only:
            settle()
            pull_cmds: list[Callable[[Any], list[str]]] = [
                lambda i: pb(work / f"pb-pull-{i}", "pull", "-q", f"{reg.host}/bench/big:1"),
                lambda i: ["skopeo", "copy", "--src-tls-verify=false", f"docker://{reg.host}/bench/big:1",
                           f"oci:{work / f'skopeo-pulled-{i}'}:big"],
            ]
            pull, skopeo_pull = alternate(n, work, pull_cmds, registry=reg)
            print(f"pull big:  pybuild {pull.show()}   skopeo copy {skopeo_pull.show()}   "
                  f"ratio {skopeo_pull.best / pull.best:4.2f} best, {skopeo_pull.median / pull.median:4.2f} median "
                  "(target >= 1; pybuild also checks every diff_id and every layer tar, skopeo does neither)")
            for cmd in pull_cmds:  # a destination that holds the image already
                timed(cmd("again"))
            again, skopeo_again = alternate(n, work, [lambda _, c=cmd: c("again") for cmd in pull_cmds],
                                            registry=reg, keep=True)
            rest, skopeo_rest = pull.median - again.median, skopeo_pull.median - skopeo_again.median
            print(f"pull again (the image already there: start-up, manifest, commit):  pybuild {again.show()}   "
                  f"skopeo copy {skopeo_again.show()}")
            print(f"pull big minus pull again (the part that grows with the image), medians:  pybuild {rest:5.2f}s   "
                  f"skopeo copy {skopeo_rest:5.2f}s   ratio {skopeo_rest / rest:4.2f}")
        for what, by_tag in rss.items():
            print(f"peak RSS {what:5s} {args.small_mb:4d} MiB image: {by_tag['small:1']:4d} MiB   "
                  f"{args.mb:4d} MiB image: {by_tag['big:1']:4d} MiB")
    finally:
        reg.stop()
        subprocess.run(["buildah", "--root", str(work / "b-root"), "--runroot", str(work / "b-run"),
                        "--storage-driver", "vfs", "rm", "--all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
