"""A hint to the C library that Python's standard library has no call for, used to make a pull
cheaper: glibc's allocator keeps freed megabyte buffers for reuse (mallopt). Only a hint: off
glibc it does nothing, and nothing depends on it for correctness.

(Starting a staged blob's writeback early with sync_file_range was tried twice: while a pull
extracted its layers it cost more CPU than the closing fsync it shortened saved; once a pull only
checked them, it made no difference that four side-by-side runs of bench/transfer_bench.py could
tell from noise.)
"""

from __future__ import annotations

from functools import cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@cache
def _libc() -> object | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


def keep_freed_buffers() -> bool:
    """Ask glibc's allocator to keep freed megabyte buffers for reuse instead of giving them back to
    the kernel at once. An incoming layer is decompressed into a new 1 MiB bytes object per read
    (python-zstandard, then the store's tar reader): with glibc's defaults a thread's heap is
    trimmed and faulted in again over and over, about a sixth of a pull's system time. For a
    process that is about to pull or load and then exit (the CLI commands); a library caller
    decides for its own process. Returns whether the setting took (False off glibc)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 4 << 20)  # 1 MiB buffers come from the heap, not mmap
    return bool(ok and mallopt(_M_TRIM_THRESHOLD, 64 << 20))  # and stay there once freed
