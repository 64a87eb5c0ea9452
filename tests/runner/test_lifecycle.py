"""stop, kill, pause and unpause through the real CLI, checked from inside the container and
from the host. Real kernel, as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import state
from tests.conftest import Pybuild
from tests.runner.conftest import status_of, wait_for

pytestmark = pytest.mark.root


def test_paused_processes_cannot_tell(pbs: Pybuild, store: Path) -> None:
    """The freezer sends no signal (no SIGSTOP/SIGCONT a process could see or trap), and from the
    host a frozen process is not a stopped one."""
    pbs("run", "-d", "--name", "frz", "busybox", "sh", "-c",
        "for s in CONT TSTP TTIN TTOU STOP HUP; do trap \"echo got $s\" $s; done; echo ready; while :; do sleep 0.01; done")
    wait_for(lambda: "ready" in pbs("logs", "frz").stdout, what="the traps to be set")
    pid = state.load(next((store / "containers").glob("*/state.json")).parent).pid
    pbs("pause", "frz")
    assert status_of(pbs, "frz")["Status"] == "paused"
    assert Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][0] != "T"
    pbs("unpause", "frz")
    assert status_of(pbs, "frz")["Status"] == "running"
    pbs("exec", "frz", "true")  # a round trip through the container after the thaw
    assert pbs("logs", "frz").stdout == "ready\n"
    pbs("rm", "-f", "frz")


def test_stop_with_a_negative_time_waits_for_the_process(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "slow", "busybox", "sh", "-c", "trap 'sleep 1; exit 5' TERM; echo ready; while :; do sleep 0.05; done")
    wait_for(lambda: "ready" in pbs("logs", "slow").stdout, what="the trap to be set")
    pbs("stop", "-t", "-1", "slow")
    assert status_of(pbs, "slow")["ExitCode"] == 5  # not killed at once (137)


def test_kill_sends_the_signal_given_and_refuses_unknown_ones(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "sig", "busybox", "sh", "-c", "trap 'echo usr1' USR1; trap 'exit 3' HUP; echo ready; while :; do sleep 0.05; done")
    wait_for(lambda: "ready" in pbs("logs", "sig").stdout, what="the traps to be set")
    pbs("kill", "-s", "USR1", "sig")
    wait_for(lambda: "usr1" in pbs("logs", "sig").stdout, what="the USR1 trap")
    assert pbs("kill", "-s", "NOSUCH", "sig", check=False).returncode == 1
    pbs("kill", "-s", "1", "sig")  # a number: SIGHUP
    wait_for(lambda: status_of(pbs, "sig")["Status"] == "exited", what="the HUP trap to end it")
    assert status_of(pbs, "sig")["ExitCode"] == 3
    proc = pbs("kill", "sig", check=False)
    assert proc.returncode == 1 and "not running" in proc.stderr


def test_ps_tells_paused_running_exited_and_created_apart(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "up", "busybox", "sleep", "300")
    pbs("run", "-d", "--name", "frozen", "busybox", "sleep", "300")
    pbs("pause", "frozen")
    pbs("run", "--name", "done", "busybox", "sh", "-c", "exit 4", check=False)
    pbs("run", "--name", "never", "busybox", "no-such-command", check=False)
    rows = {line.split()[-1]: line for line in pbs("ps", "-a").stdout.splitlines()[1:]}
    assert " Up " in rows["up"] and "(Paused)" not in rows["up"]
    assert "(Paused)" in rows["frozen"]
    assert "Exited (4)" in rows["done"]
    assert "Created" in rows["never"]
    assert sorted(line.split()[-1] for line in pbs("ps").stdout.splitlines()[1:]) == ["frozen", "up"]
    pbs("rm", "-f", "up", "frozen")
