"""Helpers for end-to-end build tests: a context from a dict, a build through the real CLI, and
the resulting image read back from the store."""

from __future__ import annotations

import subprocess
from pathlib import Path

from layerstore.images import Image
from layerstore.store import Store
from tests.conftest import Pybuild


def write_context(root: Path, buildfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Buildfile").write_text(buildfile)
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def build(pb: Pybuild, context: Path, *args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    """`pybuild build --progress plain ARGS CONTEXT` (plain progress, to read step results)."""
    return pb("build", "--progress", "plain", *args, str(context), check=check, **kw)  # type: ignore[arg-type]


def image(store_root: Path, name: str) -> Image:
    with Store.open(store_root) as store:
        return store.resolve(name)


def created_by(store_root: Path, name: str) -> list[str]:
    return [h.created_by for h in image(store_root, name).history]


def step_lines(output: str, status: str) -> list[str]:
    """The names of the steps that ended with `status` (CACHED, DONE) in plain progress."""
    names: dict[str, str] = {}
    out = []
    for line in output.splitlines():
        number, _, rest = line.partition(" ")
        if rest.startswith("["):
            names[number] = rest
        elif rest == status or rest.startswith(status + " "):
            if number in names:
                out.append(names[number])
    return out
