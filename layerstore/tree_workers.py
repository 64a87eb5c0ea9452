"""Worker processes that write runs of a commit's entries, so that a tree of many small files is
written on more than one CPU: the work per file is system calls and Python, and only one thread
runs Python at a time.

`start` forks the workers and returns a `Pool`, or None where they cannot help or cannot be used
safely: one CPU, or other threads alive in this process (a forked child has only the forking
thread, and a lock another thread held at the fork would stay held in the child). The caller
(layer_tar.write_tree) starts them before any thread of its own.

The walk stays in this process, and so does everything that depends on order (layer_tar.Emitter:
hardlinks, large files streamed to the sink). Runs of walked entries go round robin to the workers
(pickled over a pipe); a worker writes a run with its copy of the EntryWriter (the tree's
descriptor is inherited; it opens directories for itself) and answers with the run's bytes and
events, or with the error that stopped it. Answers are taken in the order the runs were sent, so
the output is exactly what one process would have written. At most IN_FLIGHT runs wait per worker,
and a run's bytes are bounded (entry_writer.RUN_BYTES), which bounds memory.

A worker lives for one write_tree: it exits (os._exit, so nothing of the parent's is flushed or
finalized twice) when its task pipe closes, which also happens when the parent dies.
"""

from __future__ import annotations

import fcntl
import gc
import os
import pickle
import select
import signal
import struct
import sys
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pybuild.errors import StoreError

if TYPE_CHECKING:
    from layerstore.entry_writer import EntryWriter
    from layerstore.layer_tar import Emitter
    from layerstore.tree_walk import Walked

MAX_WORKERS = 4
IN_FLIGHT = 2
_ANSWER = struct.Struct("<BQQ")  # status (0 ok, 1 error), length of the bytes, of the pickled events
_LENGTH = struct.Struct("<I")
_PIPE_SIZE = 1 << 20


def start(writer: EntryWriter, workers: int | None) -> Pool | None:
    """`workers` processes (None: one per CPU this process may use, at most MAX_WORKERS) ready to
    write runs with `writer`; None if there should be none."""
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
        if workers < 2:
            return None
    if workers <= 0 or not hasattr(os, "fork"):
        return None
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return None
    return Pool(writer, workers)


class _Worker:
    __slots__ = ("pid", "tasks", "answers", "waiting")

    def __init__(self, pid: int, tasks: int, answers: int) -> None:
        self.pid = pid
        self.tasks = os.fdopen(tasks, "wb")
        self.answers = answers  # read unbuffered: select() must see all that is not read yet
        self.waiting = 0  # runs sent, not answered yet


class Pool:
    """The workers of one write_tree. `write_all` writes the runs; `close` ends the workers
    (always call it)."""

    def __init__(self, writer: EntryWriter, workers: int) -> None:
        self._writer = writer
        self._workers: list[_Worker] = []
        self._next = 0
        gc.freeze()  # the children never collect the parent's objects (nor run their finalizers)
        try:
            for _ in range(workers):
                self._fork()
        except BaseException:
            self.close()
            raise
        finally:
            gc.unfreeze()

    def _fork(self) -> None:
        tasks_r, tasks_w = os.pipe()
        answers_r, answers_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            status = 1
            try:
                gc.disable()
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt ends
                for w in self._workers:  # the other workers' pipes: EOF must reach them
                    os.close(w.tasks.fileno())
                    os.close(w.answers)
                os.close(tasks_w)
                os.close(answers_r)
                _serve(self._writer, tasks_r, answers_w)
                status = 0
            finally:
                os._exit(status)
        os.close(tasks_r)
        os.close(answers_w)
        try:
            fcntl.fcntl(answers_r, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)  # fewer, larger reads
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default size works too
        self._workers.append(_Worker(pid, tasks_w, answers_r))

    def write_all(self, runs: Iterator[list[Walked]], emitter: Emitter) -> int:
        """Have every run of `runs` written and emitted, in order; the number of entries."""
        order: deque[_Worker] = deque()  # whose answer comes next
        count = 0
        for run in runs:
            count += len(run)
            w = self._workers[self._next]
            self._next = (self._next + 1) % len(self._workers)
            while w.waiting >= IN_FLIGHT:
                self._take(order, emitter)
            data = pickle.dumps(run, pickle.HIGHEST_PROTOCOL)
            w.tasks.write(_LENGTH.pack(len(data)))
            w.tasks.write(data)
            w.tasks.flush()
            w.waiting += 1
            order.append(w)
            # pass on what is ready, so the sink has work while the walk goes on
            while order and select.select([order[0].answers], [], [], 0)[0]:
                self._take(order, emitter)
        while order:
            self._take(order, emitter)
        return count

    def _take(self, order: deque[_Worker], emitter: Emitter) -> None:
        """Emit the next answer (waiting for it if needed)."""
        w = order.popleft()
        status, length, events_length = _ANSWER.unpack(_read(w.answers, _ANSWER.size))
        data = _read(w.answers, length)
        events = pickle.loads(_read(w.answers, events_length)) if events_length else []
        w.waiting -= 1
        if status:
            error = pickle.loads(data)
            raise error if isinstance(error, BaseException) else StoreError(str(error))
        emitter.emit(data, events)

    def close(self) -> None:
        """End the workers (their task pipes close; they exit at EOF) and reap them."""
        for w in self._workers:
            try:
                w.tasks.close()
            except OSError:
                pass  # a worker that died cannot take the rest of its tasks
            os.close(w.answers)
        for w in self._workers:
            os.waitpid(w.pid, 0)
        self._workers = []


def _read(fd: int, n: int) -> bytes:
    """Exactly `n` bytes from the pipe `fd`."""
    parts = []
    while n:
        data = os.read(fd, n)
        if not data:
            raise StoreError("a commit worker process ended unexpectedly")
        parts.append(data)
        n -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _serve(writer: EntryWriter, tasks_fd: int, answers_fd: int) -> None:
    """The worker's loop: a run of entries in, its bytes and events (or the error) out, until EOF."""
    answers = os.fdopen(answers_fd, "wb")
    while True:
        head = os.read(tasks_fd, _LENGTH.size)
        if not head:
            return  # EOF: the parent is done (or gone)
        if len(head) < _LENGTH.size:
            head += _read(tasks_fd, _LENGTH.size - len(head))
        run = pickle.loads(_read(tasks_fd, _LENGTH.unpack(head)[0]))
        try:
            data, events = writer.write_run(run)
            status, pickled = 0, pickle.dumps(events, pickle.HIGHEST_PROTOCOL) if events else b""
        except Exception as e:  # noqa: BLE001 - handed to the parent, which raises it in its place
            status, data, pickled = 1, _portable(e), b""
        answers.write(_ANSWER.pack(status, len(data), len(pickled)))
        answers.write(data)
        answers.write(pickled)
        answers.flush()
        if status:
            return


def _portable(e: Exception) -> bytes:
    try:
        return pickle.dumps(e, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - an unpicklable error still gets its message across
        return pickle.dumps(StoreError(f"{type(e).__name__}: {e}"))
