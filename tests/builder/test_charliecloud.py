"""Charliecloud's real-world Dockerfiles (group A of the conformance README: offline on an
`alpine:3.17`), built with busybox standing in for alpine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builder.buildtools import build, image
from tests.conftest import CONFORMANCE, Pybuild

CC = CONFORMANCE / "charliecloud-dockerfiles"
GROUP_A = [
    "test__Dockerfile.argenv",
    "test__Dockerfile.metadata",
    "test__Dockerfile.ocimanifest",
    "test__Dockerfile.file-quirks",
    "test__bucache__a.df",
    "test__bucache__c.df",
    "test__bucache__from.df",
    "test__bucache__argenv.df",
    "test__bucache__argenv2.df",
    "test__bucache__argenv-special.df",
    "test__build__50_dockerfile.bats__syntax-quirks.df",
]

pytestmark = [pytest.mark.root, pytest.mark.skipif(not CC.exists(), reason="conformance data absent")]


@pytest.fixture
def alpine_store(busybox_store: Path, pb: Pybuild) -> Path:
    pb("tag", "busybox", "alpine:3.17")
    return busybox_store


@pytest.mark.slow
def test_group_a_dockerfiles_build(alpine_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    logs = [build(pb, tmp_path, "-f", CC / name, "-t", f"cc{n}:1").stderr for n, name in enumerate(GROUP_A)]
    meta = image(alpine_store, "cc1:1").config.config
    assert meta.user == "charlie:chargrp" and meta.stop_signal == "SIGWINCH" and meta.volumes == {"/mnt/foo": {}, "/mnt/bar": {}}
    # RUN env | sort sees the ARGs with values and the ENVs; the image keeps only the ENVs
    printed = {line.split(" ", 2)[2] for line in logs[0].splitlines() if " chse_" in line}
    assert printed == {"chse_arg2_df=arg2", "chse_arg3_df=arg3 arg2", "chse_env1_df=env1", "chse_env2_df=env2 env1"}
    env = pb("run", "--rm", "cc0:1", "env").stdout.splitlines()
    assert {e for e in env if e.startswith("chse_")} == {"chse_env1_df=env1", "chse_env2_df=env2 env1"}


def test_a_fail_stops_at_run_false_and_keeps_the_steps_before(alpine_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    proc = build(pb, tmp_path, "-f", CC / "test__bucache__a-fail.df", "-t", "fail:1", check=False)
    assert proc.returncode == 1
    assert 'test__bucache__a-fail.df:3: process "/bin/sh -c false" did not complete successfully: exit code: 1' in proc.stderr
    again = build(pb, tmp_path, "-f", CC / "test__bucache__a-fail.df", check=False).stderr
    assert "RUN echo foo\n#" in again.replace("\r", "") and "CACHED" in again
