#!/usr/bin/env python3
"""Layer store benchmarks, run by hand (never in CI): prints figures beside the public pipeline
`tar -cf - DIR | zstd -T0 -3` measured in the same run on the same trees.

    .venv/bin/python bench/store_bench.py [--gib 1] [--small 20000] [--big-gib 2] [--images 500] [--skip-memory]

Targets (issue 3): commit throughput >= 0.8x the pipeline for a 1 GiB tree and for 20,000 small
files; peak memory < 100 MB committing and unpacking a 2 GiB layer; an identical layer stored once;
`pybuild images` with 500 images in < 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def pipeline_seconds(root: Path, out: Path | None) -> float:
    """`tar -cf - DIR | zstd -T0 -3` to /dev/null, or (out given) to a file on the store's file
    system made durable with fsync, as a store must."""
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
    return elapsed


def commit_seconds(store_root: Path, root: Path) -> float:
    code = (
        "import sys,time; sys.path.insert(0, %r)\n"
        "from layerstore.store import Store\n"
        "from pathlib import Path\n"
        "with Store.open(Path(%r)) as s:\n"
        "    t = time.perf_counter(); s.layers.commit_dir(Path(%r)); print(time.perf_counter() - t)\n"
    ) % (str(PROJECT), str(store_root), str(root))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


def compare(label: str, work: Path, root: Path, rounds: int = 3) -> None:
    """Best of `rounds`, interleaved, so that load from other processes hits all three alike."""
    size = tree_bytes(root)
    subprocess.run(f"tar -cf - -C {root} . | cat > /dev/null", shell=True, check=True)  # warm the page cache
    null, durable, ours = [], [], []
    for i in range(rounds):
        store = work / f"store-{label}-{i}"
        null.append(pipeline_seconds(root, None))
        durable.append(pipeline_seconds(root, work / "pipeline.zst"))
        ours.append(commit_seconds(store, root))
        shutil.rmtree(store)
    n, d, o = min(null), min(durable), min(ours)

    def rate(seconds: float) -> str:
        return f"{seconds:.2f} s ({size / MiB / seconds:.0f} MiB/s)"

    print(f"{label} ({size / MiB:.0f} MiB): pybuild commit {rate(o)}; tar|zstd -T0 -3 >/dev/null {rate(n)} -> "
          f"ratio {n / o:.2f}x; tar|zstd -T0 -3 -o file + fsync {rate(d)} -> ratio {d / o:.2f}x (target >= 0.8x)")


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
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.dir))
    print(f"cpus {os.cpu_count()}, python {sys.version.split()[0]}, work dir {work}")
    try:
        big = work / "big"
        make_big_tree(big, int(args.gib * 1024) * MiB)
        compare("1 GiB tree", work, big)
        shutil.rmtree(big)
        small = work / "small"
        make_small_tree(small, args.small)
        compare(f"{args.small} small files", work, small)
        shutil.rmtree(small)
        dedup(work)
        many_images(work, args.images)
        if not args.skip_memory:
            peak_memory(work, args.big_gib)
    finally:
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
