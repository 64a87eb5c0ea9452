"""What a pull's start-up must not cost (issue 6 measures pull against skopeo, whose whole start is
~20 ms): the modules pybuild avoids on that path stay unimported, and the debug log they were
replaced for still works under --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .servers import Registry

pytestmark = pytest.mark.root

# stdlib modules the pull path once imported and no longer needs: http.client brings email, and
# ssl is for https only; logging for --debug only; tempfile/concurrent.futures/difflib are heavy
AVOIDED = ("http.client", "email", "ssl", "logging", "tempfile", "concurrent.futures", "encodings.idna")

PROBE = """
import sys
from pybuild.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
print(sorted(m for m in {avoided!r} if m in sys.modules))
sys.exit(code)
"""


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    code = PROBE.format(avoided=AVOIDED)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_a_pull_imports_none_of_the_avoided_modules(busybox_store: Path, registry: Registry, unique_repo: str,
                                                    tmp_path: Path) -> None:
    dest = f"{registry.host}/{unique_repo}:startup"
    pushed = run_probe("--root", str(busybox_store), "push", "-q", "busybox", dest)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines()[-1] == "[]"
    pulled = run_probe("--root", str(tmp_path / "other"), "pull", "--quiet", dest)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.splitlines()[-1] == "[]"


def test_debug_still_logs_from_the_layer_store(registry: Registry, tmp_path: Path) -> None:
    quiet = run_probe("--root", str(tmp_path), "pull", f"{registry.host}/no/such:1")
    assert quiet.returncode == 1 and "debug:" not in quiet.stderr
    loud = run_probe("--root", str(tmp_path), "--debug", "pull", f"{registry.host}/no/such:1")
    assert loud.returncode == 1
    assert f"debug: layerstore.registry_http: {registry.host}: using http" in loud.stderr
    assert loud.stdout.splitlines()[-1] == "['logging']"  # the probe sees what is imported
