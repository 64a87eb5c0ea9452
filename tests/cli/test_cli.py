"""The CLI shell: global options, implied `build`, and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from pybuild.cli import COMMANDS, imply_build


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybuild", *args], capture_output=True, text=True, timeout=60)


def test_help_lists_every_command_without_importing_them() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in proc.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from pybuild.cli import main\n"
         "try:\n  main(['--help'])\nexcept SystemExit: pass\n"
         "print(sorted(m for m in sys.modules if m.split('.')[0] in {'parser','builder','runner','layerstore','lark','zstandard'} or m.startswith('pybuild.commands.')))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip().splitlines()[-1] == "[]"


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("pybuild, version ")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-f", "B", "-t", "x", "."], ["build", "-f", "B", "-t", "x", "."]),
        (["--root", "/r", "-t", "x", "."], ["--root", "/r", "build", "-t", "x", "."]),
        (["--root=/r", "--debug", "."], ["--root=/r", "--debug", "build", "."]),
        (["images"], ["images"]),
        (["--debug", "run", "--rm", "x"], ["--debug", "run", "--rm", "x"]),
        (["--help"], ["--help"]),
        ([], []),
    ],
)
def test_build_is_implied_when_no_command_word(args: list[str], expected: list[str]) -> None:
    assert imply_build(args) == expected


def test_unknown_option_is_one_error_line_and_exit_1() -> None:
    proc = run("--no-such-option-anywhere", "images")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_each_error_is_followed_by_its_own_hint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "Buildfile"
    bad.write_text("FROM busybox\nRUNN x\nCOPY --frm=a b c\n")
    proc = run("--root", str(tmp_path / "store"), "build", "-f", str(bad), str(tmp_path))
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines == [
        "error: Buildfile:2:1: unknown instruction: RUNN",
        "hint: did you mean RUN?",
        "error: Buildfile:3:6: unknown flag: --frm",
        "hint: did you mean --from?",
    ]
    assert "Traceback" not in proc.stderr


def test_ctrl_c_exits_130_with_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal

    # `import -` waits on standard input: interrupt it there, as a user at a terminal would.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pybuild", "--root", str(tmp_path / "store"), "import", "-", "x:1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not _blocked_reading_stdin(proc.pid):  # i.e. in the middle of its work, not starting up
        assert time.monotonic() < deadline and proc.poll() is None, "pybuild import - never waited on stdin"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert [line for line in err.splitlines() if line] == ["error: interrupted"]  # click echoes a newline after ^C


def _blocked_reading_stdin(pid: int) -> bool:
    """The process sleeps in read(0, ...): /proc/PID/syscall is "0 0x0 ..." on x86_64 and arm64
    reads are 63; only the main thread's view is checked."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state == "S" and len(fields) > 1 and fields[0] in ("0", "63") and fields[1] == "0x0"
