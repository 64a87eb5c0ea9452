"""The container commands end to end, through the real CLI against a store holding busybox:latest.
Real kernel, as root; every test leaves no process, mount, cgroup or container file behind, even
when it fails (the `store` fixture kills and removes whatever is left)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import state
from tests.conftest import Pybuild
from tests.runner.conftest import our_cgroups, processes_of, status_of, wait_for

pytestmark = pytest.mark.root


# -- run ---------------------------------------------------------------------------------------


def test_run_returns_the_exit_status_and_output(pbs: Pybuild) -> None:
    proc = pbs("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, "out\n", "err\n")


def test_run_failures_exit_125_126_127(pbs: Pybuild) -> None:
    assert pbs("run", "--rm", "no-such-image", check=False).returncode == 125
    assert pbs("run", "--rm", "busybox", "no-such-command", check=False).returncode == 127
    assert pbs("run", "--rm", "busybox", "/etc/passwd", check=False).returncode == 126
    assert pbs("run", "--rm", "--network", "bridge", "busybox", "true", check=False).returncode == 125
    assert pbs("ps", "-aq").stdout == ""  # --rm removed the failed ones too


def test_entrypoint_and_cmd_follow_docker(pbs: Pybuild) -> None:
    pbs("run", "--name", "base", "busybox", "true")
    pbs("commit", "-c", 'ENTRYPOINT ["echo", "entry"]', "-c", 'CMD ["default"]', "base", "ep:1")
    assert pbs("run", "--rm", "ep:1").stdout == "entry default\n"
    assert pbs("run", "--rm", "ep:1", "given").stdout == "entry given\n"
    assert pbs("run", "--rm", "--entrypoint", "echo", "ep:1", "only").stdout == "only\n"
    pbs("commit", "-c", "ENTRYPOINT echo shell-form", "base", "ep:2")
    assert pbs("run", "--rm", "ep:2", "ignored").stdout == "shell-form\n"


def test_env_user_workdir_hostname(pbs: Pybuild, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n")
    out = pbs(
        "run", "--rm", "-e", "A=b", "--env-file", env_file, "-u", "nobody", "-w", "/tmp/work", "-h", "box",
        "busybox", "sh", "-c", "echo $A $FROM_FILE; id -un; pwd; hostname",
    ).stdout
    assert out.split("\n")[:4] == ["b 1", "nobody", "/tmp/work", "box"]


def test_default_hostname_is_the_short_id_or_with_the_hosts_network_the_hosts(pbs: Pybuild) -> None:
    pbs("run", "--name", "hn", "busybox", "hostname")
    assert pbs("logs", "hn").stdout.strip() == json.loads(pbs("inspect", "hn").stdout)[0]["Id"][:12]
    assert pbs("run", "--rm", "--network", "host", "busybox", "cat", "/etc/hostname").stdout == os.uname().nodename + "\n"


def test_tty_gives_a_real_pseudo_terminal(store: Path) -> None:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.execv(sys.executable, [sys.executable, "-m", "pybuild", "--root", str(store), "run", "--rm", "-it", "busybox", "sh", "-c", "tty; exit 3"])
    out = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"/dev/pts/0" in out
    assert os.waitstatus_to_exitcode(status) == 3


def test_exec_takes_the_containers_user_workdir_and_env(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "ctx", "-u", "nobody", "-w", "/srv", "-e", "K=v", "busybox", "sleep", "300")
    assert pbs("exec", "ctx", "sh", "-c", "id -un; pwd; echo $K; grep CapEff /proc/self/status").stdout.split() == [
        "nobody", "/srv", "v", "CapEff:", "0000000000000000",
    ]
    assert pbs("exec", "-u", "root", "-w", "/tmp", "ctx", "sh", "-c", "id -un; pwd").stdout.split() == ["root", "/tmp"]
    assert pbs("exec", "ctx", "/etc/passwd", check=False).returncode == 126
    pbs("rm", "-f", "ctx")


# -- lifecycle ---------------------------------------------------------------------------------


def test_detached_container_survives_the_cli_and_ps_tells_the_truth(pbs: Pybuild) -> None:
    cid = pbs("run", "-d", "--name", "bg", "busybox", "sleep", "300").stdout.strip()
    assert len(cid) == 64
    ps = pbs("ps").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert ps[1].startswith(cid[:12]) and '"sleep 300"' in ps[1] and " Up " in ps[1] and ps[1].endswith("bg")
    assert status_of(pbs, "bg")["Running"] is True
    pbs("kill", "bg")
    st = status_of(pbs, "bg")
    assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    assert "Exited (137)" in pbs("ps", "-a").stdout


def test_stop_uses_sigterm_then_sigkill_after_the_grace_period(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done")
    wait_for(lambda: "ready" in pbs("logs", "stubborn").stdout, what="the trap to be set")
    start = time.monotonic()
    pbs("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 8
    assert status_of(pbs, "stubborn")["ExitCode"] == 137


def test_stop_lets_a_cooperative_process_exit_cleanly(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "nice", "busybox", "sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in pbs("logs", "nice").stdout, what="the trap to be set")
    pbs("stop", "nice")
    assert status_of(pbs, "nice")["ExitCode"] == 0
    assert pbs("logs", "nice").stdout == "ready\nbye\n"


@pytest.mark.parametrize("how", [("stop", "-t", "5"), ("rm", "-f"), ("kill",)])
def test_ending_a_detached_rm_container_is_not_an_error(pbs: Pybuild, how: tuple[str, ...]) -> None:
    pbs("run", "-d", "--rm", "--name", "brief", "busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    proc = pbs(*how, "brief", check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    wait_for(lambda: pbs("ps", "-aq").stdout == "", what="the --rm container to be removed")


def test_supervisor_killed_is_reported_honestly(pbs: Pybuild, store: Path) -> None:
    pbs("run", "-d", "--name", "orphan", "busybox", "sleep", "300")
    cdir = next((store / "containers").glob("*/state.json")).parent
    recorded = state.load(cdir)
    assert state.is_alive(recorded.supervisor_pid, recorded.supervisor_start)
    os.kill(recorded.supervisor_pid, signal.SIGKILL)
    # While the kernel tears the container down, ps may still say running; once it says exited,
    # PID 1 must really be gone, and no exit status may be invented.
    def settled() -> dict | None:  # type: ignore[type-arg]
        st = status_of(pbs, "orphan")
        if st["Running"]:
            return None
        assert not state.is_alive(recorded.pid, recorded.pid_start)
        return st

    st = wait_for(settled, what="the container to be reported exited")
    assert st["Status"] == "exited" and st["ExitCode"] == -1 and "supervisor" in st["Error"]
    assert "Exited (unknown)" in pbs("ps", "-a").stdout
    assert not state.is_alive(recorded.pid, recorded.pid_start)
    pbs("rm", "orphan")


def test_pause_freezes_and_unpause_thaws(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "pz", "busybox", "sh", "-c", "while :; do echo x >> /count; done")
    pbs("pause", "pz")
    assert "(Paused)" in pbs("ps").stdout and status_of(pbs, "pz")["Paused"] is True
    first = pbs("exec", "pz", "true", check=False)
    assert first.returncode == 1 and "paused" in first.stderr
    pbs("unpause", "pz")

    def count() -> int:
        return int(pbs("exec", "pz", "busybox", "stat", "-c", "%s", "/count").stdout)

    a = count()
    wait_for(lambda: count() > a, what="the counter to move")
    pbs("rm", "-f", "pz")


def test_start_again_keeps_the_upper_dir_and_restart_works(pbs: Pybuild) -> None:
    pbs("run", "--name", "keep", "busybox", "sh", "-c", "echo x >> /runs; wc -l < /runs")
    assert pbs("logs", "keep").stdout == "1\n"
    pbs("start", "keep")
    wait_for(lambda: status_of(pbs, "keep")["Status"] == "exited", what="the second run")
    assert pbs("logs", "keep").stdout == "1\n2\n"
    pbs("run", "-d", "--name", "rs", "busybox", "sleep", "300")
    before = status_of(pbs, "rs")["Pid"]
    pbs("restart", "-t", "0", "rs")
    after = status_of(pbs, "rs")
    assert after["Running"] and after["Pid"] != before


def test_exec_joins_the_container(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "ex", "-e", "IN=1", "busybox", "sleep", "300")
    out = pbs("exec", "-e", "X=2", "ex", "sh", "-c", "echo $IN $X; hostname; ps -o pid,comm | grep -c sleep").stdout.split()
    assert out[0:2] == ["1", "2"] and out[3] == "1"
    assert pbs("exec", "ex", "sh", "-c", "exit 9", check=False).returncode == 9
    assert pbs("exec", "ex", "nosuch", check=False).returncode == 127
    pbs("rm", "-f", "ex")
    assert pbs("exec", "ex", "true", check=False).returncode != 0


def test_logs_keep_streams_apart_and_follow(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "lg", "busybox", "sh", "-c", "echo one; echo two >&2; sleep 0.5; echo three")
    followed = pbs("logs", "-f", "lg")
    assert followed.stdout == "one\nthree\n" and followed.stderr == "two\n"
    assert pbs("logs", "--tail", "1", "lg").stdout == "three\n"


def test_rm_refuses_a_running_container_without_force(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "busy", "busybox", "sleep", "300")
    proc = pbs("rm", "busy", check=False)
    assert proc.returncode == 1 and "running" in proc.stderr
    pbs("rm", "-f", "busy")
    assert pbs("ps", "-aq").stdout == ""


def test_names_are_unique(pbs: Pybuild) -> None:
    pbs("run", "--name", "same", "busybox", "true")
    proc = pbs("run", "--name", "same", "busybox", "true", check=False)
    assert proc.returncode == 125 and "already in use" in proc.stderr


def test_memory_limit_oom_is_reported(pbs: Pybuild) -> None:
    proc = pbs("run", "--name", "oom", "-m", "32m", "busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1", check=False)
    assert proc.returncode == 137 and "out of memory" in proc.stderr
    assert status_of(pbs, "oom")["OOMKilled"] is True


# -- commit and volumes ------------------------------------------------------------------------


def test_commit_records_history_and_parent_and_leaves_volumes_out(pbs: Pybuild, tmp_path: Path) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    pbs(
        "run", "-d", "--name", "cm", "-v", f"{bind}:/bind", "-v", "/anon", "-v", "named:/named", "busybox", "sh", "-c",
        "echo layer > /in-layer; echo v > /anon/f; echo n > /named/f; echo b > /bind/f; echo ready; sleep 300",
    )
    wait_for(lambda: "ready" in pbs("logs", "cm").stdout, what="the writes")
    image_id = pbs("commit", "-m", "snapshot", "cm", "snap:1").stdout.strip()
    assert status_of(pbs, "cm")["Running"] is True  # paused and thawed, still running
    assert pbs("diff", "busybox", "snap:1").stdout.split("\n")[:-1] == ["A /in-layer"]
    history = pbs("history", "snap:1").stdout
    assert "snapshot" in history
    config = json.loads(pbs("inspect", "snap:1").stdout)[0]
    assert config["Id"] == image_id
    pbs("rm", "-f", "-v", "cm")
    assert pbs("volume", "ls", "-q").stdout.split() == ["named"]


def test_named_volume_persists_and_volumes_from_shares(pbs: Pybuild) -> None:
    pbs("volume", "create", "data")
    pbs("run", "--rm", "-v", "data:/d", "busybox", "sh", "-c", "echo kept > /d/f")
    assert pbs("run", "--rm", "-v", "data:/d:ro", "busybox", "cat", "/d/f").stdout == "kept\n"
    assert pbs("run", "--rm", "-v", "data:/d:ro", "busybox", "sh", "-c", "echo x > /d/g", check=False).returncode != 0
    pbs("run", "--name", "src", "-v", "data:/shared", "busybox", "true")
    assert pbs("run", "--rm", "--volumes-from", "src", "busybox", "cat", "/shared/f").stdout == "kept\n"
    assert pbs("run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/shared/g", check=False).returncode == 1
    inspect = json.loads(pbs("volume", "inspect", "data").stdout)[0]
    assert inspect["Name"] == "data" and inspect["Driver"] == "local"
    assert pbs("volume", "rm", "data", check=False).returncode == 1  # in use by src
    pbs("rm", "src")
    pbs("volume", "rm", "data")
    assert pbs("volume", "ls", "-q").stdout == ""


def test_new_volume_gets_the_images_files(pbs: Pybuild) -> None:
    assert "passwd" in pbs("run", "--rm", "-v", "etcvol:/etc", "busybox", "ls", "/etc").stdout.split()


# -- isolation, as the issue lists it -----------------------------------------------------------


def test_isolation_process_hostname_network_mounts_ipc(pbs: Pybuild, tmp_path: Path) -> None:
    listing = pbs("run", "--rm", "busybox", "ps", "-o", "pid,comm").stdout.splitlines()[1:]
    assert [line.split() for line in listing] == [["1", "ps"]]
    host_name = os.uname().nodename
    pbs("run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "hostname", "inside-only")
    assert os.uname().nodename == host_name
    assert pbs("run", "--rm", "busybox", "ls", "/sys/class/net").stdout.split() == ["lo"]
    assert "/work" not in pbs("run", "--rm", "busybox", "cut", "-d", " ", "-f", "5", "/proc/self/mountinfo").stdout.split()
    shm = subprocess.run(["ipcmk", "-M", "4096"], check=True, capture_output=True, text=True).stdout.split()[-1]
    try:
        assert shm in Path("/proc/sysvipc/shm").read_text().split()  # the host sees it
        inside = pbs("run", "--rm", "busybox", "cat", "/proc/sysvipc/shm").stdout.splitlines()
        assert len(inside) == 1  # only the header: no segment of the host's
    finally:
        subprocess.run(["ipcrm", "-m", shm], check=True)


def test_privileges_proc_and_sys_inside(pbs: Pybuild) -> None:
    out = pbs(
        "run", "--rm", "busybox", "sh", "-c",
        "grep -E '^(CapBnd|CapEff|CapInh|CapAmb|NoNewPrivs)' /proc/self/status; wc -c < /proc/keys;"
        "touch /sys/x || echo sys-ro; echo x > /proc/sys/kernel/domainname || echo proc-sys-ro",
    ).stdout.split()
    # Docker's 14 default capabilities, nothing inheritable or ambient, no_new_privs
    assert out[:10] == ["CapInh:", "0" * 16, "CapEff:", "00000000a80425fb", "CapBnd:", "00000000a80425fb", "CapAmb:", "0" * 16, "NoNewPrivs:", "1"]
    assert out[10:] == ["0", "sys-ro", "proc-sys-ro"]


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7])
def test_a_workdir_through_proc_self_fd_is_refused(pbs: Pybuild, fd: int) -> None:
    # runc CVE-2024-21626: with a leaked host directory descriptor this would be a host directory
    proc = pbs("run", "--rm", "-w", f"/proc/self/fd/{fd}", "busybox", "sh", "-c", "pwd; ls", check=False)
    assert proc.returncode == 125 and proc.stdout == "" and proc.stderr.startswith("error: ")


@pytest.mark.slow
def test_fifty_runs_leave_nothing_behind(pbs: Pybuild, store: Path) -> None:
    cgroups_before = set(our_cgroups())
    for i in range(50):
        if i % 2:
            pbs("run", "--rm", "busybox", "true")
        else:
            pbs("run", "--name", f"n{i}", "-v", "/anon", "busybox", "sh", "-c", "echo x > /anon/f; echo y > /f")
            pbs("rm", "-v", f"n{i}")
    # (other work on this machine may mount and unmount meanwhile: look for ours only)
    assert str(store) not in open("/proc/self/mountinfo").read()
    assert set(our_cgroups()) == cgroups_before
    assert processes_of(store) == []
    assert list((store / "containers").glob("*/")) == []
    assert not (store / "volumes").exists() or list((store / "volumes").iterdir()) == []


def test_stop_sends_the_images_stopsignal(pbs: Pybuild) -> None:
    pbs("run", "--name", "base", "busybox", "true")
    pbs("commit", "-c", "STOPSIGNAL SIGUSR1", "base", "usr1:1")
    pbs("run", "-d", "--name", "u1", "usr1:1", "sh", "-c", "trap 'exit 42' USR1; trap '' TERM; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in pbs("logs", "u1").stdout, what="the traps to be set")
    pbs("stop", "-t", "30", "u1")
    assert status_of(pbs, "u1")["ExitCode"] == 42


def test_init_forwards_the_stop_signal(pbs: Pybuild) -> None:
    # Without --init, `sleep` is PID 1 and the kernel drops SIGTERM; the init passes it on.
    pbs("run", "-d", "--init", "--name", "withinit", "busybox", "sleep", "300")
    start = time.monotonic()
    pbs("stop", "-t", "30", "withinit")
    assert time.monotonic() - start < 10
    assert status_of(pbs, "withinit")["ExitCode"] == 143


def test_image_volumes_get_anonymous_volumes_and_limits_reach_the_cgroup(pbs: Pybuild, store: Path) -> None:
    pbs("run", "--name", "base", "busybox", "true")
    pbs("commit", "-c", "VOLUME /vol", "base", "withvol:1")
    pbs("run", "-d", "--name", "lim", "--cpus", "0.5", "--pids-limit", "20", "-m", "64m", "withvol:1", "sleep", "300")
    info = json.loads(pbs("inspect", "lim").stdout)[0]
    vol = [m for m in info["Mounts"] if m["Destination"] == "/vol"]
    assert len(vol) == 1 and vol[0]["Type"] == "volume" and len(vol[0]["Name"]) == 64
    cdir = store / "containers" / info["Id"]
    cg = state.load(cdir).get_cgroup()
    assert cg is not None
    if cg.version == 1:
        assert Path(cg.dirs["cpu"], "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert Path(cg.dirs["pids"], "pids.max").read_text().strip() == "20"
        assert Path(cg.dirs["memory"], "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    pbs("rm", "-f", "-v", "lim")
    assert pbs("volume", "ls", "-q").stdout == ""


def test_detached_tty_container_keeps_running_with_its_pty(pbs: Pybuild) -> None:
    pbs("run", "-d", "-it", "--name", "dit", "busybox", "sh")  # stdin here is not a terminal: fine with -d
    wait_for(lambda: "# " in pbs("logs", "dit").stdout, what="the shell prompt in the log")
    assert status_of(pbs, "dit")["Running"] is True
    assert pbs("exec", "dit", "cat", "/proc/1/cmdline").stdout == "sh\0"
    pbs("rm", "-f", "dit")
