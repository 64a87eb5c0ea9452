"""Foreground containers and their supervisor, through the real CLI: what a Docker user checks by
killing the client, closing the pipe it writes to, or typing at its terminal. Real kernel, as
root; the `store` fixture reaps whatever a failing test leaves."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from runner import state
from tests.conftest import Pybuild
from tests.runner.conftest import status_of, wait_for

pytestmark = pytest.mark.root


def cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pybuild", "--root", str(store), *args]


def read_until_eof(fd: int, timeout: float) -> bytes:
    """Everything readable from `fd` until its writers are all gone (AssertionError after
    `timeout`)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no EOF within {timeout}s; read so far: {data[-200:]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty whose other side is gone
                return data
            if not chunk:
                return data
            data += chunk


def test_killing_the_cli_leaves_a_foreground_container_running_and_logged(store: Path, pbs: Pybuild) -> None:
    proc = subprocess.Popen(
        cli(store, "run", "--name", "fg", "busybox", "sh", "-c", "echo start; while :; do echo tick; sleep 0.05; done"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"start\n"
        proc.kill()
        proc.wait()
        # The supervisor lets go of the CLI's stdout (its reader sees EOF) and holds the container on.
        read_until_eof(proc.stdout.fileno(), 10)
        st = status_of(pbs, "fg")
        assert st["Running"] is True
        assert "Up " in pbs("ps").stdout
        ticks = pbs("logs", "fg").stdout.count("tick")
        wait_for(lambda: pbs("logs", "fg").stdout.count("tick") > ticks, what="the log to grow after the CLI died")
        pbs("stop", "-t", "0", "fg")  # sh as PID 1 ignores SIGTERM
        st = status_of(pbs, "fg")
        assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    finally:
        proc.stdout.close()


def test_killing_the_cli_of_a_foreground_rm_container_still_removes_it_at_the_end(store: Path, pbs: Pybuild) -> None:
    proc = subprocess.Popen(cli(store, "run", "--rm", "--name", "fgrm", "busybox", "sh", "-c", "echo up; while :; do sleep 0.1; done"), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    proc.kill()
    proc.wait()
    assert status_of(pbs, "fgrm")["Running"] is True
    pbs("kill", "fgrm")
    wait_for(lambda: pbs("ps", "-aq").stdout == "", what="the --rm container to be removed")
    proc.stdout.close()


def test_killing_the_supervisor_of_a_foreground_container_is_reported_not_invented(store: Path, pbs: Pybuild) -> None:
    proc = subprocess.Popen(cli(store, "run", "--name", "sv", "busybox", "sh", "-c", "echo up; while :; do sleep 1; done"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "up\n"
    recorded = state.load(next((store / "containers").glob("*/state.json")).parent)
    os.kill(recorded.supervisor_pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == 125
    errors = [line for line in proc.stderr.read().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "supervisor" in errors[0]
    st = wait_for(lambda: (s := status_of(pbs, "sv"))["Status"] == "exited" and s, what="the exit to be reported")
    assert st["ExitCode"] == -1 and "supervisor" in st["Error"]
    assert not state.is_alive(recorded.pid, recorded.pid_start)
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("rm", [True, False])
def test_a_closed_output_pipe_ends_the_container_as_in_a_shell_pipeline(store: Path, pbs: Pybuild, rm: bool) -> None:
    run = " ".join(cli(store, "run", *(["--rm"] if rm else ["--name", "piped"]), "busybox", "yes"))
    out = subprocess.run(["sh", "-c", f"{run} | head -n 2"], capture_output=True, text=True, timeout=60)
    assert out.stdout == "y\ny\n"
    if not rm:  # `yes` is PID 1, so it gets EPIPE (not SIGPIPE) and exits 1, as under Docker
        assert (status_of(pbs, "piped")["Status"], status_of(pbs, "piped")["ExitCode"]) == ("exited", 1)
        assert pbs("logs", "piped").stdout.startswith("y\ny\n")
    assert pbs("ps", "-q").stdout == ""


# -- -it: a real terminal ------------------------------------------------------------------------


class Terminal:
    """The CLI on the slave side of a pty of our own, as a user's terminal is."""

    def __init__(self, argv: list[str], rows: int = 33, cols: int = 111) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child execs
            os.execv(argv[0], argv)
        self.resize(rows, cols, signal_cli=False)
        self.out = b""
        self.seen = 0

    def resize(self, rows: int, cols: int, *, signal_cli: bool = True) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if signal_cli:
            os.kill(self.pid, signal.SIGWINCH)  # what the kernel sends the foreground group

    def expect(self, text: str, timeout: float = 10) -> bytes:
        """Read until `text` appears after what earlier calls consumed; the output up to it."""
        deadline = time.monotonic() + timeout
        while (at := self.out.find(text.encode(), self.seen)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not seen; got {self.out[-300:]!r}"
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    self.out += os.read(self.fd, 4096)
                except OSError:
                    pass
        start, self.seen = self.seen, at + len(text)
        return self.out[start : self.seen]

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def echoes(self) -> bool:
        return bool(termios.tcgetattr(self.fd)[3] & termios.ECHO)

    def exit_status(self) -> int:
        read_until_eof(self.fd, 10)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_it_gives_a_pty_that_follows_the_window_and_passes_keys_and_the_exit_status(store: Path) -> None:
    term = Terminal(cli(store, "run", "--rm", "-it", "busybox", "sh"))
    term.expect("# ")
    assert not term.echoes()  # raw: the container's pty does the echoing
    term.send("stty size; tty\r")
    term.expect("33 111\r\n/dev/pts/0\r\n")
    term.resize(40, 100)
    # the CLI passes SIGWINCH on asynchronously: ask until the container sees the new size
    wait_for(lambda: (term.send("stty size\r"), b"40 100" in term.expect("\n/ # "))[-1], what="the new size inside")
    # (the job's own output, not the echo of the line: by then the shell's line editor is off)
    term.send("sh -c 'echo sl''eeping; exec sleep 100'\r")
    term.expect("sleeping\r\n")
    term.send("\x03")  # Ctrl-C: SIGINT to the container's foreground job, not to pybuild
    term.expect("\n/ # ")
    term.send("echo still-here\r")
    term.expect("still-here\r\n")
    term.send("exit 7\r")
    assert term.exit_status() == 7


@pytest.mark.parametrize(("argv", "prompt", "keys", "status"), [
    (("busybox", "sh"), "# ", "\x04", 0),  # Ctrl-D: end of input, the shell exits 0
    (("--init", "busybox", "sh", "-c", "echo ready; exec sleep 100"), "ready", "\x03", 130),  # the init passes SIGINT on
], ids=["ctrl-d", "ctrl-c-init"])
def test_it_keys_end_the_container_as_under_docker(store: Path, argv: tuple[str, ...], prompt: str, keys: str, status: int) -> None:
    term = Terminal(cli(store, "run", "--rm", "-it", *argv))
    term.expect(prompt)
    term.send(keys)
    assert term.exit_status() == status


def test_killing_an_it_cli_gives_the_terminal_back_and_the_container_lives_on(store: Path, pbs: Pybuild) -> None:
    term = Terminal(cli(store, "run", "-it", "--name", "itk", "busybox", "sh"))
    term.expect("# ")
    assert not term.echoes()
    os.kill(term.pid, signal.SIGKILL)
    os.waitpid(term.pid, 0)
    wait_for(term.echoes, what="the terminal's settings to be restored")
    assert status_of(pbs, "itk")["Running"] is True
    pbs("rm", "-f", "itk")
    os.close(term.fd)


def test_exec_it_gives_a_pty_of_the_terminals_size_and_the_exit_status(store: Path, pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "ex", "busybox", "sleep", "300")
    term = Terminal(cli(store, "exec", "-it", "ex", "sh"))
    term.expect("# ")
    term.send("tty; stty size\r")
    term.expect("/dev/pts/0\r\n33 111\r\n")
    term.send("exit 3\r")
    assert term.exit_status() == 3
    pbs("rm", "-f", "ex")
