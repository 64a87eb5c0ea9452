"""`transfer_registry._in_parallel`, the download/upload scheduler: the first failure, and Ctrl-C,
come back only once no worker runs any more (the caller then removes what the workers wrote)."""

from __future__ import annotations

import signal
import threading

import pytest

from layerstore.transfer_registry import PARALLEL, _in_parallel

DEADLINE = 30.0


def test_every_item_runs_once() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def record(item: int) -> None:
        with lock:
            seen.append(item)

    _in_parallel(record, list(range(10)), "t")
    assert sorted(seen) == list(range(10))


def test_the_first_failure_comes_back_after_the_others_stopped() -> None:
    cancelled = threading.Event()
    finished: list[str] = []
    started = threading.Barrier(2)

    def fn(item: str) -> None:
        started.wait(DEADLINE)  # both run at once
        if item == "bad":
            raise ValueError("bad item")
        assert cancelled.wait(DEADLINE)  # runs until asked to stop
        finished.append(item)

    assert PARALLEL >= 2
    with pytest.raises(ValueError, match="bad item"):
        _in_parallel(fn, ["slow", "bad"], "t", cancel=cancelled.set)
    assert finished == ["slow"]  # it was asked to stop, and had, before the failure came back


def test_ctrl_c_comes_back_after_the_workers_stopped() -> None:
    cancelled = threading.Event()
    finished: list[str] = []
    main = threading.main_thread().ident
    assert threading.get_ident() == main

    def fn(item: str) -> None:
        if item == "interrupt":
            signal.pthread_kill(main, signal.SIGINT)  # the user's Ctrl-C, while the caller waits
        assert cancelled.wait(DEADLINE)
        finished.append(item)

    with pytest.raises(KeyboardInterrupt):
        _in_parallel(fn, ["interrupt", "other"], "t", cancel=cancelled.set)
    assert sorted(finished) == ["interrupt", "other"]  # neither was still running
