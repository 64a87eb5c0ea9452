"""Two hints to the C library that Python's standard library has no call for, used to make a pull
cheaper: glibc's allocator keeps freed megabyte buffers for reuse (mallopt), and a staged blob's
writeback starts while it still arrives (sync_file_range), so that its closing fsync has little
left to wait for. Only hints: where the C library lacks them they do nothing, and nothing depends
on them for correctness (the fsync still makes each blob durable).

(Early writeback cost more CPU than it saved while a pull also extracted every layer; since a
pull only checks its layers, it shortens a pull in bench/transfer_bench.py.)
"""

from __future__ import annotations

from functools import cache

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_STEP = 16 << 20  # bytes written between two `start_writeback` calls


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



def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes of `fd` from `offset` to the disk, without waiting for it."""
    sync_file_range = getattr(_libc(), "sync_file_range", None)
    if sync_file_range is not None:
        import ctypes

        sync_file_range(fd, ctypes.c_longlong(offset), ctypes.c_longlong(length), _SYNC_FILE_RANGE_WRITE)
