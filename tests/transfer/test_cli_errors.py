"""Bad input to save, load, login and logout from the CLI: one `error:` line (or Docker's message
where Docker's habit is not an error), no traceback, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PASSWORD, USER
from .servers import Registry


def cli(root: Path, *args: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pybuild", "--root", str(root), *map(str, args)],
                          capture_output=True, text=True, input=input, timeout=120)


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return errors[0]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hello").write_text("secret-content\n" * 100)
    assert cli(root, "import", tree, "app:1").returncode == 0
    return root


def test_save_and_load_refuse_bad_paths_in_one_line(store: Path, tmp_path: Path) -> None:
    assert "no such directory" in one_error(cli(store, "save", "-o", tmp_path / "missing/dir/x.tar", "app:1"))
    assert "is a directory" in one_error(cli(store, "save", "-o", tmp_path, "app:1"))
    assert "image nope:1 not found" in one_error(cli(store, "save", "-o", tmp_path / "x.tar", "app:1", "nope:1"))
    assert "not an empty directory" in one_error(cli(store, "save", "--format", "oci-dir", "-o", tmp_path / "tree", "app:1"))
    assert not (tmp_path / "x.tar").exists() and not list(tmp_path.glob(".x.tar*"))
    assert "no such file or directory" in one_error(cli(store, "load", "-i", tmp_path / "missing.tar"))
    line = one_error(cli(store, "load", "-i", tmp_path / "tree/etc/hello"))
    assert "not a tar archive" in line and "secret" not in line  # no file content in the message
    assert "neither an OCI image layout" in one_error(cli(store, "load", "-i", tmp_path / "tree"))
    images = cli(store, "images", "-q", "-a").stdout.split()
    assert len(images) == 1


def test_logout_is_dockers_when_not_logged_in(tmp_path: Path, private_auth_files: Path) -> None:
    proc = cli(tmp_path / "s", "logout", "registry.example:5000")
    assert proc.returncode == 0 and proc.stdout == "Not logged in to registry.example:5000\n"
    cfg = private_auth_files / ".docker/config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"auths": {"registry.example:5000": {"auth": "dTpw"}}}))
    line = one_error(cli(tmp_path / "s", "logout", "registry.example:5000"))
    assert str(cfg) in line
    assert json.loads(cfg.read_text())["auths"]  # Docker's file is never changed


def test_login_without_a_terminal_says_how(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pybuild", "--root", str(tmp_path / "s"), "login", "-u", "me",
                           "127.0.0.1:9"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "--password-stdin" in one_error(proc) and "Warning" not in proc.stderr


@pytest.mark.root
def test_login_refused_and_accepted_as_docker_says_it(basic_registry: Registry, tmp_path: Path,
                                                       private_auth_files: Path) -> None:
    proc = cli(tmp_path / "s", "login", "-u", USER, "--password-stdin", basic_registry.host, input="wrong\n")
    assert "login refused (HTTP 401" in one_error(proc)
    assert "hint: check the user name and password" in proc.stderr
    proc = cli(tmp_path / "s", "login", "-u", USER, "--password-stdin", basic_registry.host, input=PASSWORD + "\n")
    assert proc.returncode == 0 and proc.stdout == "Login Succeeded\n"
    proc = cli(tmp_path / "s", "logout", basic_registry.host)
    assert proc.stdout == f"Removing login credentials for {basic_registry.host}\n"
