"""The runner's pure decisions, as data: CMD x ENTRYPOINT, users, env, capabilities, -v specs,
docker ps formatting, sizes, signals, the log format. No root needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import RuntimeError_
from runner import display, logfile, process, state
from runner.containers import capability_set, merge_env, signal_number
from runner.entrypoint import container_argv
from runner.users import parse_group, parse_passwd, resolve_user
from runner.volumes import VolumeSpec, parse_volume_spec

# -- F85: CMD x ENTRYPOINT (Docker's table in "Understand how CMD and ENTRYPOINT interact") --

SH = ["/bin/sh", "-c"]


@pytest.mark.parametrize(
    "entrypoint, cmd, args, override, expected",
    [
        (None, ["/bin/ls", "-l"], [], None, ["/bin/ls", "-l"]),
        (None, SH + ["ls -l"], [], None, SH + ["ls -l"]),
        (["entry", "p1"], None, [], None, ["entry", "p1"]),
        (["entry", "p1"], ["c1", "c2"], [], None, ["entry", "p1", "c1", "c2"]),
        (["entry", "p1"], SH + ["cmd"], [], None, ["entry", "p1", "/bin/sh", "-c", "cmd"]),
        (SH + ["entry p1"], ["c1"], [], None, SH + ["entry p1", "c1"]),  # shell form: CMD is $0, ignored
        (["entry"], ["c1"], ["a1", "a2"], None, ["entry", "a1", "a2"]),
        (["entry"], ["c1"], [], "other", ["other"]),  # --entrypoint clears the image's CMD
        (["entry"], ["c1"], ["a1"], "other", ["other", "a1"]),
        (["entry"], ["c1"], ["a1"], "", ["a1"]),
    ],
)
def test_cmd_entrypoint_table(entrypoint, cmd, args, override, expected) -> None:  # type: ignore[no-untyped-def]
    assert container_argv(entrypoint, cmd, args, override) == expected


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(RuntimeError_, match="no command specified"):
        container_argv(None, None, [], None)
    with pytest.raises(RuntimeError_):
        container_argv(["e"], ["c"], [], "")


# -- F82: users ---------------------------------------------------------------------------------

PASSWD = parse_passwd("root:x:0:0:root:/root:/bin/sh\n# c\nbad line\napp:x:1000:1001::/home/app:/bin/sh\nnohome:x:7:7\n")
GROUP = parse_group("root:x:0:\napp:x:1001:\nextra:x:2000:app,other\nwheel:x:10:app\n")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("", (0, 0, (), "/root")),
        ("root", (0, 0, (), "/root")),
        ("app", (1000, 1001, (2000, 10), "/home/app")),
        ("1000", (1000, 1001, (2000, 10), "/home/app")),
        ("app:extra", (1000, 2000, (), "/home/app")),  # a group given: only that group
        ("app:55", (1000, 55, (), "/home/app")),
        ("4242", (4242, 0, (), "/")),  # unknown number: gid 0
        ("4242:4242", (4242, 4242, (), "/")),
        ("nohome", (7, 7, (), "/")),
    ],
)
def test_user_resolution(spec: str, expected: tuple[int, int, tuple[int, ...], str]) -> None:
    u = resolve_user(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == expected


@pytest.mark.parametrize("spec, message", [("nobody", "unable to find user nobody"), ("app:nogroup", "unable to find group nogroup"), ("-1", "out of range")])
def test_user_errors(spec: str, message: str) -> None:
    with pytest.raises(RuntimeError_, match=message):
        resolve_user(spec, PASSWD, GROUP)


# -- env, capabilities, signals ---------------------------------------------------------------


def test_env_merging() -> None:
    assert merge_env(["PATH=/bin", "A=1"], ["A=2", "B", "C", "D="], {"B": "from-host"}) == ("PATH=/bin", "A=2", "B=from-host", "D=")
    assert merge_env(["A=1"], ["A"], {}) == ()
    with pytest.raises(RuntimeError_):
        merge_env([], ["=x"], {})


def test_container_env_defaults() -> None:
    env = process.container_env(["A=1", "HOME=/h"], hostname="box", home="/root", tty=True)
    assert env == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "HOME=/h", "HOSTNAME=box", "TERM=xterm"]


def test_capability_set() -> None:
    default = capability_set([], [])
    assert len(default) == 14 and "SYS_ADMIN" not in default
    assert "SYS_ADMIN" in capability_set(["cap_sys_admin"], [])
    assert "CHOWN" not in capability_set([], ["CHOWN"])
    assert capability_set([], ["ALL"]) == ()
    assert capability_set(["NET_ADMIN"], ["ALL"]) == ("NET_ADMIN",)
    with pytest.raises(RuntimeError_):
        capability_set(["NOPE"], [])


def test_signal_names() -> None:
    assert signal_number("TERM") == signal_number("SIGTERM") == signal_number("15") == 15
    assert signal_number("sigkill") == 9
    for bad in ("NOPE", "0", "999"):
        with pytest.raises(RuntimeError_):
            signal_number(bad)


# -- -v ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/data", VolumeSpec("/data")),
        ("/data:ro", VolumeSpec("/data", readonly=True)),
        ("name:/data", VolumeSpec("/data", "name", "volume")),
        ("name:/data:ro,nocopy", VolumeSpec("/data", "name", "volume", True, False)),
        ("/host/dir:/data", VolumeSpec("/data", "/host/dir", "bind")),
        ("/host/dir/:/data/:rw,z", VolumeSpec("/data", "/host/dir", "bind")),
    ],
)
def test_volume_specs(text: str, expected: VolumeSpec) -> None:
    assert parse_volume_spec(text) == expected


@pytest.mark.parametrize("text", ["relative/dir:/data", "name:data", "a:/b:c:d", "name:/data:bogus", "bad name!:/d"])
def test_bad_volume_specs(text: str) -> None:
    with pytest.raises(RuntimeError_):
        parse_volume_spec(text)


# -- sizes (how ps and durations print: tests/cli/test_formatting.py) ---------------------------


@pytest.mark.parametrize("text, value", [("512", 512), ("64m", 64 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("2GiB", 2 << 30), ("10kb", 10240)])
def test_sizes(text: str, value: int) -> None:
    assert display.parse_size(text) == value


def test_memory_minimum() -> None:
    with pytest.raises(RuntimeError_, match="6MB"):
        display.parse_memory("1m")


# -- the log and the state record --------------------------------------------------------------


def test_log_records_round_trip_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "log"
    w = logfile.LogWriter(path)
    w.write(logfile.STDOUT, b"out\n")
    w.write(logfile.STDERR, b"err\n")
    w.close()
    with open(path, "ab") as f:
        f.write(b"\x01\x00\x00\x00\x00\x00\x00\x09partial")
    records, offset = logfile.read_records(path)
    assert [(r.stream, r.data) for r in records] == [(1, b"out\n"), (2, b"err\n")]
    assert logfile.read_records(path, offset)[0] == []


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    from runner.cgroups import Limits
    from runner.spec import Mount

    rec = state.ContainerState(
        id="b" * 64, name="n", created=state.now(), image="busybox", image_digest="sha256:x", image_id="sha256:y",
        config=state.RunConfig(argv=("true",), mounts=(Mount("/d", "volume", "/v", name="v", copy=True),), limits=Limits(memory=1 << 30, cpus=0.5)),
        lowers=("/l1", "/l2"),
    )
    state.save(tmp_path, rec)
    assert state.load(tmp_path) == rec


def test_observed_state_never_claims_a_dead_process_runs() -> None:
    rec = state.ContainerState(
        id="c" * 64, name="n", created=state.now(), image="i", image_digest="d", image_id="i",
        config=state.RunConfig(argv=("true",)), status=state.RUNNING, pid=2**22 + 1, pid_start=1,
    )
    seen = state.observed(rec)
    assert seen.status == state.EXITED and seen.exit_code == state.UNKNOWN_EXIT and "supervisor" in seen.error


# -- signalling the container process by pid ---------------------------------------------------


def test_a_pidfd_is_taken_only_on_a_child_of_the_shim() -> None:
    """A pid read from the shim that is no longer its child (exited, reaped, maybe reused) gets
    no pidfd, so `Launched.signal` cannot reach whoever holds that pid now."""
    import os
    import subprocess

    from runner.launch import _child_pidfd

    child = subprocess.Popen(["sleep", "30"])
    try:
        fd = _child_pidfd(child.pid, os.getpid())
        assert fd is not None
        os.close(fd)
        assert _child_pidfd(child.pid, os.getppid()) is None  # someone else's child
        assert _child_pidfd(2**22 + 1, os.getpid()) is None  # no such process
    finally:
        child.kill()
        child.wait()
