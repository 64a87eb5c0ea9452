"""`commit` through the real CLI: `--change` applied as a Buildfile instruction is by a build,
`--pause`, history and parent. Real kernel, as root."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Pybuild
from tests.runner.conftest import status_of, wait_for

pytestmark = pytest.mark.root


def image_config(pbs: Pybuild, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(pbs("inspect", ref).stdout)[0]["Config"]


def test_changes_follow_the_buildfile_rules(pbs: Pybuild) -> None:
    pbs("run", "--name", "src", "-e", "BASE=/opt", "busybox", "true")
    pbs(
        "commit", "-c", "ENV APP=$BASE/app", "-c", 'LABEL "a b"=c', "-c", "EXPOSE 80 53/udp", "-c", "WORKDIR /srv",
        "-c", "WORKDIR sub", "-c", "USER nobody", "-c", "STOPSIGNAL SIGUSR1", "-c", "VOLUME /data",
        "-c", "HEALTHCHECK CMD true", "-c", "CMD echo $APP", "src", "all:1",
    )
    c = image_config(pbs, "all:1")
    assert "APP=/opt/app" in c["Env"] and c["Labels"] == {"a b": "c"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}} and c["WorkingDir"] == "/srv/sub"
    assert (c["User"], c["StopSignal"], c["Volumes"]) == ("nobody", "SIGUSR1", {"/data": {}})
    assert c["Cmd"] == ["/bin/sh", "-c", "echo $APP"] and c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert pbs("run", "--rm", "all:1").stdout == "/opt/app\n"


def test_entrypoint_clears_cmd_unless_a_change_set_it_first(pbs: Pybuild) -> None:
    pbs("run", "--name", "src", "busybox", "echo", "from-the-container")
    pbs("commit", "-c", 'ENTRYPOINT ["echo", "entry"]', "src", "e:1")
    assert image_config(pbs, "e:1")["Cmd"] is None
    assert pbs("run", "--rm", "e:1").stdout == "entry\n"
    # exec ENTRYPOINT + shell CMD: entry... /bin/sh -c cmd (F85)
    pbs("commit", "-c", "CMD date", "-c", 'ENTRYPOINT ["echo"]', "src", "e:2")
    assert pbs("run", "--rm", "e:2").stdout == "/bin/sh -c date\n"


def test_commit_without_pause_leaves_the_container_running_and_records_parent_and_history(pbs: Pybuild) -> None:
    pbs("run", "-d", "--name", "live", "busybox", "sh", "-c", "echo x > /made; echo ready; while :; do sleep 0.05; done")
    wait_for(lambda: "ready" in pbs("logs", "live").stdout, what="the write")
    pbs("commit", "--pause=false", "-m", "no pause", "live", "np:1")
    assert status_of(pbs, "live")["Status"] == "running"
    log = pbs("log", "np:1").stdout
    assert "no pause" in log and "(busybox:latest)" in log  # the parent follows in the chain
    assert "no pause" in pbs("history", "np:1").stdout
    assert pbs("diff", "busybox", "np:1").stdout.split() == ["A", "/made"]
    pbs("rm", "-f", "live")
