#!/usr/bin/env python3
"""Layer store benchmarks, run by hand (never in CI): prints figures beside the public pipeline
`tar -cf - DIR | zstd -T0 -3` measured in the same run on the same trees.

    .venv/bin/python bench/store_bench.py [--gib 1] [--small 20000] [--big-gib 2] [--images 500] [--skip-memory]
                                          [--rounds 5] [--dir DIR] [--also OTHER_CHECKOUT]

Targets (issue 3): commit throughput >= 0.8x the pipeline for a 1 GiB tree and for 20,000 small
files; peak memory < 100 MB committing and unpacking a 2 GiB layer; an identical layer stored once;
`pybuild images` with 500 images in < 0.3 s.

The ratio that counts is against the pipeline writing its output to a file on the same file system
and fsyncing it, since a commit must write and fsync its blob; the pipeline to /dev/null is shown
too. Each figure is the median of interleaved runs, as wall time and as CPU time (user+sys of every
thread and process), because the machines this runs on are shared. Unpacking the same layer is
compared with `zstd -dc | tar -x` (no target: for information).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from layerstore.store import Store  # noqa: E402

MiB = 1 << 20


def make_big_tree(root: Path, total: int, file_size: int = 8 * MiB) -> None:
    """Files of half random, half repetitive data (compresses about 2:1, like binaries)."""
    root.mkdir(parents=True)
    block = os.urandom(file_size // 2)
    line = b"the quick brown fox jumps over the lazy dog\n"
    text = (line * (file_size // 2 // len(line) + 1))[: file_size // 2]
    for i in range(total // file_size):
        d = root / f"d{i % 16}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(block[i:] + block[:i] + text)


def make_small_tree(root: Path, count: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        d = root / f"dir{i % 200}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.txt").write_bytes((b"line %d of a small source file\n" % i) * (1 + i % 60))


def tree_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def pipeline_seconds(root: Path, out: Path | None) -> tuple[float, float]:
    """(wall, CPU) of `tar -cf - DIR | zstd -T0 -3` to /dev/null, or (out given) to a file on the
    store's file system made durable with fsync, as a store must."""
    cpu = _children_cpu()
    t = time.perf_counter()
    if out is None:
        subprocess.run(f"tar -cf - -C {root} . | zstd -T0 -3 -q > /dev/null", shell=True, check=True)
    else:
        subprocess.run(f"tar -cf - -C {root} . | zstd -T0 -3 -q -f -o {out}", shell=True, check=True)
        fd = os.open(out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - t
    if out is not None:
        out.unlink()
    return elapsed, _children_cpu() - cpu


_TIMED = (
    "import resource,sys,time; sys.path.insert(0, %r)\n"
    "from layerstore.store import Store\n"
    "from pathlib import Path\n"
    "def cpu():  # this process's threads and its worker processes (reaped by then)\n"
    "    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime\n"
    "with Store.open(Path(%r)) as s:\n"
    "%s"
)


def commit_seconds(code_dir: Path, store_root: Path, root: Path) -> tuple[float, float]:
    """(wall, CPU: user+sys of all threads and worker processes) of committing `root` with the
    layer store in `code_dir`, in a fresh process."""
    code = _TIMED % (str(code_dir), str(store_root), (
        "    c, t = cpu(), time.perf_counter(); s.layers.commit_dir(Path(%r)); print(time.perf_counter() - t, cpu() - c)\n"
    ) % str(root))
    wall, cpu = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(wall), float(cpu)


def unpack_seconds(code_dir: Path, store_root: Path, keep: Path) -> tuple[float, float]:
    """(wall, CPU) of unpacking the one layer of the store again (its unpacked dir moved to `keep`)."""
    code = _TIMED % (str(code_dir), str(store_root), (
        "    [d] = list(s.layout.layers.glob('*.json')); layer = s.layers.known('sha256:' + d.name[:-5])\n"
        "    done = s.layers.unpacked_path(layer.diff_id)\n"
        "    if done.exists(): done.rename(%r)\n"
        "    c, t = cpu(), time.perf_counter(); s.layers.unpack(layer); print(time.perf_counter() - t, cpu() - c)\n"
    ) % str(keep))
    wall, cpu = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(wall), float(cpu)


def untar_seconds(blob: Path, target: Path) -> tuple[float, float]:
    target.mkdir()
    cpu = _children_cpu()
    t = time.perf_counter()
    subprocess.run(f"zstd -dc {shlex.quote(str(blob))} | tar -x -C {shlex.quote(str(target))}", shell=True, check=True)
    return time.perf_counter() - t, _children_cpu() - cpu


def _figures(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median CPU of (wall, CPU) samples."""
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def _who(code_dir: Path) -> str:
    return "pybuild" if code_dir == PROJECT else f"pybuild ({code_dir})"


def compare(label: str, work: Path, root: Path, codes: list[Path], rounds: int = 5) -> None:
    """Medians of `rounds` runs, interleaved (pipelines, then each layer store in `codes`), so that
    load from other processes hits all alike; wall time and CPU time (user+sys), since on a loaded
    machine the wall time says little."""
    size = tree_bytes(root)
    subprocess.run(f"tar -cf - -C {root} . | cat > /dev/null", shell=True, check=True)  # warm the page cache
    null: list[tuple[float, float]] = []
    durable: list[tuple[float, float]] = []
    ours: dict[Path, list[tuple[float, float]]] = {c: [] for c in codes}
    slug = label.replace(" ", "-")
    stores = {c: work / f"store-{slug}-{k}" for k, c in enumerate(codes)}
    for i in range(rounds):
        null.append(pipeline_seconds(root, None))
        durable.append(pipeline_seconds(root, work / "pipeline.zst"))
        for c in codes:
            if stores[c].exists():
                shutil.rmtree(stores[c])
            ours[c].append(commit_seconds(c, stores[c], root))
    (n, n_cpu), (d, d_cpu) = _figures(null), _figures(durable)

    def rate(seconds: float) -> str:
        return f"{seconds:.2f} s ({size / MiB / seconds:.0f} MiB/s)"

    print(f"{label} ({size / MiB:.0f} MiB), medians of {rounds}: tar|zstd -T0 -3 -o file + fsync {rate(d)}, "
          f"CPU {d_cpu:.2f} s; to /dev/null {rate(n)}, CPU {n_cpu:.2f} s")
    for c in codes:
        o, o_cpu = _figures(ours[c])
        print(f"  {_who(c)} commit {rate(o)}, CPU {o_cpu:.2f} s -> ratio {d / o:.2f}x wall, {d_cpu / o_cpu:.2f}x CPU "
              f"(target >= 0.8x; vs /dev/null {n / o:.2f}x wall, {n_cpu / o_cpu:.2f}x CPU)")
    unpack_compare(slug, work, stores, rounds)
    for store in stores.values():
        shutil.rmtree(store)


def unpack_compare(slug: str, work: Path, stores: dict[Path, Path], rounds: int) -> None:
    """Unpacking the layer just committed (by each layer store, from its own store) beside
    `zstd -dc BLOB | tar -x`, interleaved. The outputs are kept until the end: ext4 is slow to hand
    out inodes freed moments before (its recently_deleted() scan), which would otherwise tax
    whichever tool runs after a removal."""
    keep = work / f"unpacked-{slug}"
    keep.mkdir()
    [blob] = list((next(iter(stores.values())) / "blobs" / "sha256").iterdir())
    ours: dict[Path, list[tuple[float, float]]] = {c: [] for c in stores}
    theirs = []
    for i in range(rounds):
        theirs.append(untar_seconds(blob, keep / f"tar-{i}"))
        for k, (c, store) in enumerate(stores.items()):
            ours[c].append(unpack_seconds(c, store, keep / f"ours-{k}-{i}"))
    t, t_cpu = _figures(theirs)
    print(f"  unpack, medians of {rounds}: zstd -dc | tar -x {t:.2f} s, CPU {t_cpu:.2f} s")
    for c in stores:
        o, o_cpu = _figures(ours[c])
        print(f"    {_who(c)} {o:.2f} s, CPU {o_cpu:.2f} s -> ratio {t / o:.2f}x wall, {t_cpu / o_cpu:.2f}x CPU")
    subprocess.run(["rm", "-rf", str(keep)], check=True)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and execve, so a child would report
# this (large) bench process's peak.
_HWM = "int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"


def peak_memory(work: Path, gib: float) -> None:
    tree = work / "huge"
    make_big_tree(tree, int(gib * 1024) * MiB, file_size=64 * MiB)
    store = work / "store-mem"
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from layerstore.store import Store\n"
        "from pathlib import Path\n"
        "with Store.open(Path(%r)) as s:\n"
        "    layer = s.layers.commit_dir(Path(%r))\n"
        "    print(%s, layer.size, layer.uncompressed_size)\n"
    ) % (str(PROJECT), str(store), str(tree), _HWM)
    # separate processes so each peak is its own: commit, then unpack in a fresh one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    commit_peak, size, usize = map(int, out)
    code_unpack = (
        "import sys; sys.path.insert(0, %r)\n"
        "from layerstore.store import Store\n"
        "from layerstore.layers import remove_tree\n"
        "from pathlib import Path\n"
        "with Store.open(Path(%r)) as s:\n"
        "    [d] = list(s.layout.layers.glob('*.json'))\n"
        "    layer = s.layers.known('sha256:' + d.name[:-5])\n"
        "    remove_tree(s.layers.unpacked_path(layer.diff_id), s.tmp)\n"
        "    s.layers.unpack(layer)\n"
        "    print(%s)\n"
    ) % (str(PROJECT), str(store), _HWM)
    unpack_peak = int(subprocess.run([sys.executable, "-c", code_unpack], capture_output=True, text=True, check=True).stdout)
    print(f"peak memory: commit of a {usize / MiB / 1024:.1f} GiB layer ({size / MiB:.0f} MiB zstd) {commit_peak / 1024:.0f} MB; "
          f"unpack {unpack_peak / 1024:.0f} MB (target < 100 MB)")
    shutil.rmtree(tree)
    shutil.rmtree(store)


def dedup(work: Path) -> None:
    a = work / "dup-a"
    make_small_tree(a, 100)
    with Store.open(work / "store-dup") as s:
        l1 = s.layers.commit_dir(a)
        l2 = s.layers.commit_dir(a)
        blobs = len(list(s.blobs.all()))
    print(f"identical layer committed twice: same diff_id {l1.diff_id == l2.diff_id}, blobs stored {blobs} (target 1)")


def many_images(work: Path, n: int) -> None:
    root = work / "store-images"
    tree = work / "img-tree"
    make_small_tree(tree, 10)
    with Store.open(root) as s:
        base = s.commit(tree, parent=None, created_by="base", consume=False)
        for i in range(n):
            image = s.write_image(parent=base, instruction=f"LABEL n={i}", created=f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z")
            s.tags.set(f"app{i % 50}:{i}", image.digest)
    cmd = [str(PROJECT / ".venv/bin/pybuild"), "--root", str(root), "images"]
    times = []
    for _ in range(5):
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run([str(PROJECT / ".venv/bin/pybuild"), "--version"], capture_output=True, check=True)
    startup = time.perf_counter() - t
    print(f"pybuild images with {n} images ({len(out.splitlines()) - 1} rows): best {min(times):.3f} s, "
          f"median {sorted(times)[2]:.3f} s (target < 0.3 s; interpreter+CLI start alone {startup:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--big-gib", type=float, default=2.0)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each, interleaved (default 5)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--also", type=Path, action="append", default=[], metavar="DIR",
                    help="also measure the layer store in DIR, interleaved (e.g. an earlier commit's, from "
                         "`git archive REV layerstore pybuild | tar -x -C DIR`)")
    args = ap.parse_args()
    codes = [PROJECT, *(d.resolve() for d in args.also)]
    work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, work dir {work}")
    try:
        big = work / "big"
        make_big_tree(big, int(args.gib * 1024) * MiB)
        compare(f"{args.gib:g} GiB tree", work, big, codes, args.rounds)
        shutil.rmtree(big)
        small = work / "small"
        make_small_tree(small, args.small)
        compare(f"{args.small} small files", work, small, codes, args.rounds)
        shutil.rmtree(small)
        dedup(work)
        many_images(work, args.images)
        if not args.skip_memory:
            peak_memory(work, args.big_gib)
    finally:
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
