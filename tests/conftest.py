"""Fixtures every test package shares.

- `pb`: runs the real `pybuild` CLI in a subprocess against this test's own store
  (`pb("images")`, `pb("run", "--rm", "busybox", "true", check=False)`).
- `store_root`: an empty store directory for this test.
- `busybox_store`: a store holding `busybox:latest` (made once per session with
  `pybuild bootstrap busybox`, copied per test).
- `SHARED`: ../shared beside the project root, where the conformance data lives.
Tests marked `root` are skipped with a reason when not run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
BUSYBOX = Path("/bin/busybox")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root and the real kernel")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def need_tool(name: str) -> str:
    """The path of a peer tool, or skip the test saying which package provides it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (dev/install --test installs it)")
    return path


Pybuild = Callable[..., subprocess.CompletedProcess[str]]


def make_pb(root: Path) -> Pybuild:
    def pb(
        *args: str | os.PathLike[str],
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pybuild", "--root", str(root), *map(str, args)]
        full_env = dict(os.environ)
        full_env.pop("PYBUILD_ROOT", None)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pybuild {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    return pb


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def pb(store_root: Path) -> Pybuild:
    return make_pb(store_root)


@pytest.fixture(scope="session")
def busybox_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not BUSYBOX.exists():
        pytest.skip("/bin/busybox is missing (Debian package busybox-static)")
    root = tmp_path_factory.mktemp("busybox-template") / "store"
    make_pb(root)("bootstrap", "busybox")
    return root


@pytest.fixture
def busybox_store(busybox_store_template: Path, store_root: Path) -> Iterator[Path]:
    """A private copy of a store holding busybox:latest."""
    subprocess.run(["cp", "-a", str(busybox_store_template), str(store_root)], check=True)
    yield store_root
