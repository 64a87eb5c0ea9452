"""The Buildfiles in examples/ build offline on `pybuild bootstrap busybox` and do what their
comments say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.builder.buildtools import build, image, step_lines
from tests.conftest import PROJECT, Pybuild

EXAMPLES = PROJECT / "examples" / "Buildfiles"
pytestmark = pytest.mark.root


def test_every_busybox_example_is_tested() -> None:
    names = {p.name for p in EXAMPLES.iterdir() if (p / "Buildfile").exists()}
    assert names == {"hello", "multistage", "cache-mount", "debian"}


def test_multistage_example_keeps_only_the_tool(busybox_store: Path, pb: Pybuild) -> None:
    log = build(pb, EXAMPLES / "multistage", "-t", "wordcount:1").stderr
    assert "all tests passed" in log
    assert pb("run", "--rm", "wordcount:1", "--version").stdout == "wordcount 1.0\n"
    assert pb("run", "--rm", "--entrypoint", "sh", "wordcount:1", "-c", "ls /src 2>&1; id -un").stdout == (
        "ls: /src: No such file or directory\nnobody\n"
    )
    labels = image(busybox_store, "wordcount:1").config.config.labels
    assert labels == {"org.opencontainers.image.title": "wordcount", "org.opencontainers.image.version": "1.0"}
    build(pb, EXAMPLES / "multistage", "-t", "wordcount:2", "--build-arg", "VERSION=2.5")
    assert pb("run", "--rm", "wordcount:2", "--version").stdout == "wordcount 2.5\n"


@pytest.mark.slow
def test_cache_mount_example_fetches_once(busybox_store: Path, pb: Pybuild) -> None:
    def said(log: str, what: str) -> int:  # output lines of the RUN, not its name
        return len(re.findall(rf"^#\d+ \d+\.\d+ {what}", log, flags=re.M))

    first = build(pb, EXAMPLES / "cache-mount", "-t", "cached:1").stderr
    assert said(first, "fetching") == 3
    again = build(pb, EXAMPLES / "cache-mount", "-t", "cached:1", "--no-cache").stderr
    assert said(again, "cache hit") == 3 and said(again, "fetching") == 0
    assert pb("run", "--rm", "cached:1").stdout == "contents of alpha\ncontents of beta\ncontents of gamma\n"
    assert "[4/4] RUN --mount=type=cache" in " ".join(step_lines(again, "DONE"))
