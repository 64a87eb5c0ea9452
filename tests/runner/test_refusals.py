"""Bad input to the container commands, through the real CLI: each is refused with one `error:`
line (and at most a hint), no traceback, Docker's exit status, and nothing left behind: no
container directory, volume, mount, cgroup or process. Real kernel, as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Pybuild
from tests.runner.conftest import processes_of, status_of

pytestmark = pytest.mark.root

RUN_REFUSALS = {
    "unknown image": ("no-such-image", "true"),
    "memory not a size": ("--memory", "abc", "busybox", "true"),
    "memory below docker's minimum": ("--memory", "1k", "busybox", "true"),
    "cpus zero": ("--cpus", "0", "busybox", "true"),
    "cpus more than the machine": ("--cpus", "1000", "busybox", "true"),
    "cpus not a number": ("--cpus", "abc", "busybox", "true"),
    "pids-limit not a number": ("--pids-limit", "x", "busybox", "true"),
    "unknown flag": ("--no-such-flag", "busybox", "true"),
    "relative bind source": ("-v", "rel/dir:/x", "busybox", "true"),
    "missing bind source, after an anonymous and a named volume": ("-v", "/anon", "-v", "named:/n", "-v", "/no/such/dir:/x", "busybox", "true"),
    "duplicate mount point": ("-v", "/a", "-v", "/a", "busybox", "true"),
    "relative destination": ("-v", "/tmp:rel", "busybox", "true"),
    "relative workdir": ("-w", "rel", "busybox", "true"),
    "unknown user": ("-u", "nosuch", "busybox", "true"),
    "unknown group": ("-u", "root:nosuch", "busybox", "true"),
    "unknown network": ("--network", "bridge", "busybox", "true"),
    "unknown volumes-from": ("--volumes-from", "nosuch", "busybox", "true"),
    "bad name": ("--name", "bad/name", "busybox", "true"),
    "empty env name": ("-e", "=x", "busybox", "true"),
    "missing env file": ("--env-file", "/no/such/file", "busybox", "true"),
    "unknown capability": ("--cap-add", "NOSUCH", "busybox", "true"),
    "nothing to run": ("--entrypoint", "", "busybox"),
}


def assert_refused(proc, code: int) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) in (1, 2) and lines[0].startswith("error: "), proc.stderr
    assert len(lines) == 1 or lines[1].startswith("hint: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def assert_nothing_left(store: Path) -> None:
    assert [p.name for p in (store / "containers").iterdir() if p.name != "lock"] == []
    assert not (store / "volumes").exists() or list((store / "volumes").iterdir()) == []
    assert processes_of(store) == []


@pytest.mark.parametrize("args", RUN_REFUSALS.values(), ids=RUN_REFUSALS.keys())
def test_a_refused_run_says_why_exits_125_and_leaves_nothing(pbs: Pybuild, store: Path, args: tuple[str, ...]) -> None:
    assert_refused(pbs("run", *args, check=False), 125)
    assert_nothing_left(store)


def test_a_name_in_use_is_refused_and_the_first_container_kept(pbs: Pybuild, store: Path) -> None:
    pbs("run", "--name", "taken", "busybox", "true")
    assert_refused(pbs("run", "--name", "taken", "busybox", "true", check=False), 125)
    assert pbs("ps", "-aq").stdout.count("\n") == 1


def test_a_command_that_cannot_start_exits_126_or_127_and_stays_created(pbs: Pybuild) -> None:
    """As Docker: the container exists (status created, the exit code and error recorded)."""
    assert_refused(pbs("run", "--name", "nf", "busybox", "no-such-command", check=False), 127)
    assert_refused(pbs("run", "--name", "nx", "busybox", "/etc/passwd", check=False), 126)
    for name, code in (("nf", 127), ("nx", 126)):
        st = status_of(pbs, name)
        assert (st["Status"], st["ExitCode"], st["Running"]) == ("created", code, False) and st["Error"]
    assert "Created" in pbs("ps", "-a").stdout


@pytest.mark.parametrize("command", [
    ("start", "nosuch"), ("stop", "nosuch"), ("restart", "nosuch"), ("kill", "nosuch"), ("pause", "nosuch"),
    ("unpause", "nosuch"), ("rm", "nosuch"), ("logs", "nosuch"), ("exec", "nosuch", "true"), ("inspect", "nosuch"),
    ("commit", "nosuch", "x:1"), ("kill", "-s", "NOSUCH", "busybox"), ("volume", "rm", "nosuch"),
    ("volume", "inspect", "nosuch"), ("volume", "create", "bad/name"),
])
def test_other_commands_refuse_with_one_line_and_exit_1(pbs: Pybuild, store: Path, command: tuple[str, ...]) -> None:
    proc = pbs(*command, check=False)
    assert proc.returncode == 1, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] != []
    assert "Traceback" not in proc.stderr
    assert_nothing_left(store)


@pytest.mark.parametrize("change", ["RUN true", "FROM busybox", "ENV", "LABEL a", "STOPSIGNAL NOPE", "EXPOSE abc", 'VOLUME ""'])
def test_a_refused_commit_change_makes_no_image(pbs: Pybuild, change: str) -> None:
    pbs("run", "--name", "src", "busybox", "true")
    before = pbs("images", "-q").stdout
    assert_refused(pbs("commit", "-c", change, "src", "x:1", check=False), 1)
    assert pbs("images", "-q").stdout == before
