"""The sandbox on a plain busybox root file system: namespaces, root, credentials, limits, exit
statuses, and a clean upper dir afterwards. Real kernel, as root."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pybuild.errors import RuntimeError_
from runner.capabilities import DEFAULT_CAPABILITIES
from runner.cgroups import Limits
from runner.sandbox import run_sandbox
from runner.spec import ExitStatus, Mount, ProcessSpec, SandboxSpec

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def spec_for(rootfs: Path, upper: Path, *argv: str, **kw: object) -> SandboxSpec:
    process_keys = {"env", "cwd", "user", "tty"}
    process = ProcessSpec(tuple(argv), **{k: v for k, v in kw.items() if k in process_keys})  # type: ignore[arg-type]
    return SandboxSpec(process, (rootfs,), upper, **{k: v for k, v in kw.items() if k not in process_keys})  # type: ignore[arg-type]


def run(rootfs: Path, upper: Path, *argv: str, **kw: object) -> tuple[ExitStatus, str, str]:
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def collect(stream: str, data: bytes) -> None:
        out[stream] += data

    status = run_sandbox(spec_for(rootfs, upper, *argv, **kw), on_output=collect)
    return status, out["stdout"].decode(), out["stderr"].decode()


def sh(rootfs: Path, upper: Path, script: str, **kw: object) -> tuple[ExitStatus, str, str]:
    return run(rootfs, upper, "/bin/sh", "-c", script, **kw)


def test_exit_status_comes_back(rootfs: Path, upper: Path) -> None:
    assert sh(rootfs, upper, "exit 3")[0].code == 3
    assert sh(rootfs, upper, "true")[0] == ExitStatus(0)


def test_signal_death_reports_128_plus_n(rootfs: Path, upper: Path) -> None:
    # PID 1 ignores signals it has no handler for, so the shell kills a child of its own.
    status, _, _ = sh(rootfs, upper, "sh -c 'kill -9 $$'; exit $?")
    assert status.code == 137
    status, _, _ = run(rootfs, upper, "/bin/sh", "-c", "trap - TERM; kill -TERM $$; sleep 5", init=True)
    assert status.code == 128 + signal.SIGTERM


def test_stdout_and_stderr_are_separate_streams(rootfs: Path, upper: Path) -> None:
    status, out, err = sh(rootfs, upper, "echo out; echo err >&2")
    assert (status.code, out, err) == (0, "out\n", "err\n")


def test_process_sees_only_its_own_processes(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "sleep 30 & ps -o pid,comm; true")
    lines = out.split("\n")[1:-1]
    pids = sorted(int(line.split()[0]) for line in lines)
    assert pids[0] == 1 and len(pids) == 3  # sh, sleep, ps


def test_hostname_changes_stay_inside(rootfs: Path, upper: Path) -> None:
    before = socket.gethostname()
    # Changing the hostname needs CAP_SYS_ADMIN (as in Docker); give it to prove the isolation.
    caps = (*DEFAULT_CAPABILITIES, "SYS_ADMIN")
    _, out, _ = sh(rootfs, upper, "hostname changed-inside; hostname; cat /etc/hostname", hostname="box", capabilities=caps)
    assert out == "changed-inside\nbox\n"
    assert socket.gethostname() == before


def test_network_none_has_only_loopback_and_it_is_up(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "ls /sys/class/net; ip -o link show lo")
    names, link = out.split("\n", 1)[0], out.split("\n", 1)[1]
    assert names == "lo"
    assert "UP" in link.split("<", 1)[1].split(">", 1)[0]


def test_network_host_sees_the_hosts_devices(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "ls /sys/class/net", network="host")
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


def test_host_mounts_are_invisible(rootfs: Path, upper: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-mount"
    marker.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "host-only-tmpfs", str(marker)], check=True)
    try:
        _, out, _ = sh(rootfs, upper, "cat /proc/self/mountinfo")
    finally:
        subprocess.run(["umount", str(marker)], check=True)
    assert "host-only" not in out
    mount_points = [line.split()[4] for line in out.splitlines()]
    assert "/work" not in mount_points and all(not p.startswith(str(tmp_path)) for p in mount_points)


def test_ipc_objects_are_separate(rootfs: Path, upper: Path) -> None:
    created = subprocess.run(["ipcmk", "-M", "4096"], check=True, capture_output=True, text=True).stdout
    shm_id = created.split()[-1]
    try:
        assert shm_id in Path("/proc/sysvipc/shm").read_text().split()  # the host sees it
        _, out, _ = sh(rootfs, upper, "cat /proc/sysvipc/shm")
    finally:
        subprocess.run(["ipcrm", "-m", shm_id], check=True)
    assert len(out.splitlines()) == 1  # only the header


def test_docker_default_capabilities_and_no_new_privs(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert fields["CapBnd"] == fields["CapEff"] == fields["CapPrm"] == "00000000a80425fb"
    assert fields["CapInh"] == fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"


def test_user_by_name_gets_its_groups_and_no_capabilities(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "id; echo $HOME; grep CapEff /proc/self/status", user="test")
    assert out.splitlines()[0] == "uid=1000(test) gid=1000(test) groups=2000(extra)"
    assert out.splitlines()[1] == "/home/test"
    assert out.splitlines()[2].split()[1] == "0000000000000000"


def test_user_with_group_drops_supplementary_groups(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "id -u; id -g; id -G", user="test:nogroup")
    assert out.split() == ["1000", "65534", "65534"]
    _, out, _ = sh(rootfs, upper, "id -u; id -g", user="4242")
    assert out.split() == ["4242", "0"]


def test_unknown_user_fails_before_running(rootfs: Path, upper: Path) -> None:
    with pytest.raises(RuntimeError_, match="unable to find user nosuch"):
        sh(rootfs, upper, "true", user="nosuch")


def test_missing_command_is_127_and_not_executable_is_126(rootfs: Path, upper: Path) -> None:
    with pytest.raises(RuntimeError_, match="executable file not found") as e:
        run(rootfs, upper, "no-such-command")
    assert e.value.exit_code == 127
    with pytest.raises(RuntimeError_) as e:
        run(rootfs, upper, "/etc/passwd")
    assert e.value.exit_code == 126


def test_workdir_is_created_and_used(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "pwd", cwd="/srv/app")
    assert out == "/srv/app\n"
    assert (upper / "srv/app").is_dir()


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8, 9, 10])
def test_workdir_through_proc_self_fd_fails(rootfs: Path, upper: Path, fd: int) -> None:
    # runc CVE-2024-21626: a leaked host directory fd would make this the host's directory.
    leaked = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # inheritable into nothing of ours
    try:
        with pytest.raises(RuntimeError_):
            sh(rootfs, upper, "pwd; ls", cwd=f"/proc/self/fd/{fd}")
    finally:
        os.close(leaked)


def test_no_descriptor_of_ours_leaks_in(rootfs: Path, upper: Path) -> None:
    keep = os.open("/", os.O_RDONLY)
    os.set_inheritable(keep, True)
    try:
        _, out, _ = sh(rootfs, upper, "ls /proc/self/fd")
    finally:
        os.close(keep)
    assert sorted(int(x) for x in out.split()) == [0, 1, 2, 3]  # 3: ls's own directory fd


def test_proc_masked_and_readonly_paths(rootfs: Path, upper: Path) -> None:
    # SYS_ADMIN would allow these writes: only the read-only mounts stop them.
    caps = (*DEFAULT_CAPABILITIES, "SYS_ADMIN")
    status, out, err = sh(
        rootfs,
        upper,
        "cat /proc/keys | wc -c; echo 1 > /proc/sys/kernel/domainname && echo writable;"
        "echo h > /proc/sysrq-trigger && echo writable; cat /proc/self/mountinfo",
        capabilities=caps,
    )
    lines = out.splitlines()
    assert lines[0] == "0" and "writable" not in out
    options = {line.split()[4]: line.split()[5].split(",") for line in lines[1:]}
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq", "/sys"):
        if os.path.exists(path):  # this kernel's /proc may lack some
            assert "ro" in options[path], path
    for path in ("/proc/keys", "/proc/timer_list", "/sys/firmware"):
        if os.path.exists(path):
            assert path in options, path


def test_dev_is_minimal(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "ls /dev")
    assert set(out.split()) == {
        "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    } - ({"core"} if not os.path.exists("/proc/kcore") else set())


def test_upper_holds_only_the_containers_changes(rootfs: Path, upper: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    mounts = (Mount("/mnt/data", "bind", str(data)), Mount("/scratch", "tmpfs", size=1 << 20))
    status, _, _ = sh(rootfs, upper, "echo x > /mnt/data/f; echo y > /scratch/g; echo z > /etc/new", mounts=mounts)
    assert status.code == 0
    found = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
    assert found == ["etc", "etc/new"]
    assert (data / "f").read_text() == "x\n"
    assert not list(tmp_path.glob("upper/../.run-*"))


def test_readonly_bind_and_secret_file(rootfs: Path, upper: Path, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    data = tmp_path / "ro"
    data.mkdir()
    mounts = (Mount("/ro", "bind", str(data), readonly=True), Mount("/run/secrets/token", "secret", str(secret)))
    _, out, _ = sh(rootfs, upper, "touch /ro/x || echo denied; cat /run/secrets/token; echo; echo >> /run/secrets/token || echo denied", mounts=mounts)
    assert out.split() == ["denied", "s3cret", "denied"]


def test_env_defaults(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "env | sort", env=("A=1",), hostname="h1")
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["A"] == "1" and env["HOSTNAME"] == "h1" and env["HOME"] == "/root"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_pids_limit_stops_a_fork_bomb(rootfs: Path, upper: Path) -> None:
    # counted with shell builtins only: no fork is left once the limit is reached
    # (busybox sh gives up on a failed fork, hence the subshell)
    script = "(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n"
    status, out, _ = sh(rootfs, upper, script, limits=Limits(pids=10))
    assert 5 <= int(out.strip()) <= 10


def test_memory_limit_oom_kills_the_container_and_is_reported(rootfs: Path, upper: Path) -> None:
    status, _, _ = sh(rootfs, upper, "dd if=/dev/zero of=/dev/null bs=256M count=1", limits=Limits(memory=32 << 20))
    assert status.oom_killed
    assert status.code == 137


def test_init_reaps_orphans_and_forwards_signals(rootfs: Path, upper: Path) -> None:
    _, out, _ = sh(rootfs, upper, "sh -c 'sleep 0.1 &' ; sleep 0.3; ps -o stat,comm | grep -c '^Z' || true", init=True)
    assert out.strip() == "0"
    _, out, _ = sh(rootfs, upper, "cat /proc/1/cmdline | tr '\\0' ' '; echo", init=True)
    assert "python" in out or "pybuild" in out


def test_cpus_limit_is_applied(rootfs: Path, upper: Path) -> None:
    # Read the quota from inside the cgroup namespace root, through the container's /proc.
    status, out, _ = sh(rootfs, upper, "cat /proc/self/cgroup", limits=Limits(cpus=0.5))
    assert status.code == 0
    lines = [line for line in out.splitlines() if ":cpu:" in line or line.startswith("0::")]
    assert all(line.endswith(":/") for line in lines)


def test_spec_is_a_value() -> None:
    spec = SandboxSpec(ProcessSpec(("true",)), (Path("/l"),), Path("/u"))
    assert replace(spec, hostname="x").hostname == "x"
