"""End-to-end builds through `pybuild build` on a busybox store: the cache, failures, stages,
and what lands in the image config and history."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.builder.buildtools import build, created_by, image, step_lines, write_context
from tests.conftest import PROJECT, Pybuild, make_pb, need_tool

pytestmark = pytest.mark.root


def test_hello_example_builds_and_runs(busybox_store: Path, pb: Pybuild) -> None:
    build(pb, PROJECT / "examples/Buildfiles/hello", "-t", "hello:1")
    out = pb("run", "--rm", "hello:1", "cat", "/srv/www/index.html").stdout
    assert "<h1>hello from pybuild</h1>" in out
    config = image(busybox_store, "hello:1").config.config
    assert config.cmd == ("httpd", "-f", "-v", "-p", "8080", "-h", "/srv/www")
    assert config.working_dir == "/srv/www" and config.exposed_ports == {"8080/tcp": {}}


def test_rebuild_is_fully_cached_and_gives_the_same_image(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCMD [\"cat\", \"/b.txt\"]\n", {"a.txt": "A"})
    first = build(pb, ctx, "-t", "app:1")
    assert len(step_lines(first.stdout + first.stderr, "DONE")) >= 2
    second = build(pb, ctx, "-t", "app:2")
    log = second.stderr
    assert step_lines(log, "CACHED") == ["[1/3] FROM busybox@" + image(busybox_store, "busybox").digest, "[2/3] COPY a.txt /a.txt", "[3/3] RUN cat /a.txt > /b.txt"]
    assert image(busybox_store, "app:1").digest == image(busybox_store, "app:2").digest


def test_touch_hits_the_cache_but_new_bytes_with_same_size_and_mtime_miss(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nCOPY data /data\nRUN wc -c /data\n", {"data": "0123456789"})
    build(pb, ctx, "-t", "t:1")
    os.utime(ctx / "data", (1, 1))
    assert "[2/3] COPY data /data" in step_lines(build(pb, ctx, "-t", "t:2").stderr, "CACHED")
    st = os.stat(ctx / "data")
    (ctx / "data").write_text("9876543210")
    os.utime(ctx / "data", ns=(st.st_atime_ns, st.st_mtime_ns))
    log = build(pb, ctx, "-t", "t:3", "--explain-cache").stderr
    assert "[2/3] COPY data /data" in step_lines(log, "DONE")
    assert "cache miss: source data changed" in log
    assert pb("run", "--rm", "t:3", "cat", "/data").stdout == "9876543210"


def test_changed_arg_misses_at_its_first_use_not_at_the_arg(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nARG V=1\nCOPY f /f\nRUN echo $V > /v\n", {"f": "x"})
    build(pb, ctx, "-t", "a:1")
    log = build(pb, ctx, "-t", "a:2", "--build-arg", "V=2").stderr
    assert "[2/3] COPY f /f" in step_lines(log, "CACHED")
    assert "[3/3] RUN echo $V > /v" in step_lines(log, "DONE")
    assert "cache miss: variable V changed" in log
    assert pb("run", "--rm", "a:2", "cat", "/v").stdout == "2\n"
    history = created_by(busybox_store, "a:2")
    assert "ARG V=2" in history and "RUN |1 V=2 /bin/sh -c echo $V > /v # buildkit" in history


def test_failed_step_names_the_line_and_status_shows_output_and_tags_nothing(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUN echo fine\n\nRUN echo doomed; echo oops >&2; exit 7\nRUN echo never\n")
    proc = build(pb, ctx, "-t", "broken:1", check=False)
    assert proc.returncode == 1
    assert 'error: Buildfile:4: process "/bin/sh -c echo doomed; echo oops >&2; exit 7" did not complete successfully: exit code: 7' in proc.stderr
    assert " doomed\n" in proc.stderr and " oops\n" in proc.stderr
    assert ">>> RUN echo doomed" in proc.stderr
    assert "broken" not in pb("images").stdout
    assert not [p for p in (busybox_store / "tmp").iterdir() if not p.name.startswith(".")]
    # the step before the failure is cached: fixing the file resumes there
    (ctx / "Buildfile").write_text("FROM busybox\nRUN echo fine\n\nRUN echo fixed\n")
    log = build(pb, ctx, "-t", "broken:1").stderr
    assert "[2/3] RUN echo fine" in step_lines(log, "CACHED")


def test_target_builds_only_the_stages_it_needs(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox AS Base
RUN echo base > /base
FROM busybox AS unused
RUN false
FROM base AS tools
RUN echo tools > /tools
FROM busybox
COPY --from=TOOLS /tools /from-name
COPY --from=0 /base /from-index
"""
    ctx = write_context(tmp_path / "ctx", text)
    log = build(pb, ctx, "-t", "multi:1").stderr
    assert "RUN false" not in log
    assert pb("run", "--rm", "multi:1", "cat", "/from-name", "/from-index").stdout == "tools\nbase\n"
    log = build(pb, ctx, "--target", "tools", "-t", "tools:1").stderr
    assert "COPY --from" not in log
    assert pb("run", "--rm", "tools:1", "cat", "/base", "/tools").stdout == "base\ntools\n"
    later = write_context(tmp_path / "later", "FROM busybox AS first\nCOPY --from=next /x /x\nFROM busybox AS next\nFROM first\n")
    proc = build(pb, later, check=False)
    assert "needs to be defined before the current stage" in proc.stderr and "Buildfile:2" in proc.stderr


def test_config_and_history_record_every_instruction(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox
MAINTAINER someone
SHELL ["/bin/sh", "-ec"]
ENV A=1 B="two words"
LABEL org.example.a=$A "org.example.b"="x y"
EXPOSE 80 8000-8001/UDP
VOLUME ["/data"]
USER nobody
WORKDIR /srv
WORKDIR app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost
ONBUILD RUN echo triggered
ENTRYPOINT echo hello
CMD ["ignored"]
"""
    ctx = write_context(tmp_path / "ctx", text)
    build(pb, ctx, "-t", "meta:1")
    img = image(busybox_store, "meta:1")
    c = img.config.config
    assert c.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1", "B=two words")
    assert c.labels == {"org.example.a": "1", "org.example.b": "x y"}
    assert c.exposed_ports == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}}
    assert c.volumes == {"/data": {}} and c.user == "nobody" and c.working_dir == "/srv/app"
    assert c.stop_signal == "SIGINT" and c.shell == ("/bin/sh", "-ec")
    assert c.healthcheck == {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000, "Retries": 2}
    assert c.on_build == ("RUN echo triggered",)
    assert c.entrypoint == ("/bin/sh", "-ec", "echo hello") and c.cmd == ("ignored",)
    history = [h.created_by for h in img.history[1:]]
    assert history == [
        "MAINTAINER someone",
        "SHELL [/bin/sh -ec]",
        "ENV A=1 B=two words",
        "LABEL org.example.a=1 org.example.b=x y",
        "EXPOSE [80/tcp 8000/udp 8001/udp]",
        "VOLUME [/data]",
        "USER nobody",
        "WORKDIR /srv",
        "WORKDIR /srv/app",
        "STOPSIGNAL SIGINT",
        'HEALTHCHECK &{["CMD-SHELL" "wget -q localhost"] "5s" "0s" "0s" "0s" \'\\x02\'}',
        "ONBUILD RUN echo triggered",
        'ENTRYPOINT ["/bin/sh" "-ec" "echo hello"]',
        'CMD ["ignored"]',
    ]
    layers = [h for h in img.history[1:] if not h.empty_layer]
    assert [h.created_by for h in layers] == ["WORKDIR /srv", "WORKDIR /srv/app"]
    # WORKDIR made the directories, owned by the USER at that point
    out = pb("run", "--rm", "--entrypoint", "stat", "meta:1", "-c", "%U %a", "/srv/app").stdout
    assert out == "nobody 755\n"
    # a child build runs the trigger; its grandchildren do not inherit it
    child = write_context(tmp_path / "child", "FROM meta:1\nRUN true\n")
    log = build(pb, child, "-t", "child:1").stderr
    assert "ONBUILD RUN echo triggered" in log and "triggered" in log
    assert image(busybox_store, "child:1").config.config.on_build is None


def test_entrypoint_clears_an_inherited_cmd(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", 'FROM busybox AS base\nCMD ["base"]\nFROM base\nENTRYPOINT ["/bin/echo"]\n')
    build(pb, ctx, "-t", "ep:1")
    c = image(busybox_store, "ep:1").config.config
    assert c.entrypoint == ("/bin/echo",) and c.cmd is None


def test_missing_base_image_says_how_to_get_it(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM example.invalid/nothing:1\n")
    proc = build(pb, ctx, check=False)
    assert "Buildfile:1: base image example.invalid/nothing:1 is not in the store" in proc.stderr
    assert "pybuild pull" in proc.stderr and "pybuild bootstrap" in proc.stderr


def test_parse_errors_name_the_file_line_and_column(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUNN true\n")
    proc = build(pb, ctx, check=False)
    assert proc.returncode == 1 and "Buildfile:2" in proc.stderr and "RUNN" in proc.stderr.upper()


def test_stdin_buildfile_iidfile_labels_and_quiet(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    proc = pb("build", "-q", "-f", "-", "--iidfile", iid, "--label", "a=b", "-t", "in:1", tmp_path, input="FROM busybox\nRUN echo hi > /hi\n")
    img = image(busybox_store, "in:1")
    assert proc.stdout.strip() == img.id == iid.read_text()
    assert proc.stderr == ""
    assert img.config.config.labels == {"a": "b"}
    pb("build", "-q", "-", input="FROM busybox\n")  # CONTEXT `-`: the Buildfile on stdin, no context


def test_json_progress_is_one_object_per_line(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUN echo out\n")
    proc = pb("build", "--progress", "json", ctx)
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert {"event": "output", "stream": "stdout", "data": "out\n"}.items() <= next(e for e in events if e["event"] == "output").items()
    assert [e["name"] for e in events if e["event"] == "done" and "RUN" in e.get("name", "")] == ["[2/2] RUN echo out"]


def test_onbuild_fires_for_a_stage_of_the_same_file_and_scratch_builds(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox AS base
ONBUILD RUN echo fired > /fired
FROM base AS child
RUN cat /fired
FROM scratch
COPY --from=child /fired /fired
COPY f /f
"""
    ctx = write_context(tmp_path / "ctx", text, {"f": "F"})
    log = build(pb, ctx, "-t", "sc:1").stderr
    assert "[child 2/3] ONBUILD RUN echo fired > /fired" in log and "[child 3/3] RUN cat /fired" in log
    img = image(busybox_store, "sc:1")
    assert len(img.layers) == 2 and img.config.config.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    assert [h.created_by for h in img.history] == ["COPY /fired /fired # buildkit", "COPY f /f # buildkit"]


def test_a_command_that_cannot_start_is_a_step_failure(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", 'FROM busybox\nRUN ["no-such-command", "x"]\n')
    proc = build(pb, ctx, check=False)
    assert proc.returncode == 1
    assert 'error: Buildfile:2: process "no-such-command x" did not complete successfully' in proc.stderr
    assert "executable file not found" in proc.stderr


@pytest.mark.compat
def test_built_images_read_back_with_skopeo(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    skopeo = need_tool("skopeo")
    ctx = write_context(tmp_path / "ctx", 'FROM busybox\nENV A=1\nCOPY f /f\nCMD ["cat", "/f"]\n', {"f": "x"})
    build(pb, ctx, "-t", "compat:1")
    out = subprocess.run([skopeo, "inspect", "--config", f"oci:{busybox_store}:compat:1"], capture_output=True, text=True, check=True)
    config = json.loads(out.stdout)
    assert config["config"]["Cmd"] == ["cat", "/f"] and "A=1" in config["config"]["Env"]
    assert [h["created_by"] for h in config["history"]][-3:] == ["ENV A=1", "COPY f /f # buildkit", 'CMD ["cat" "/f"]']


@pytest.mark.compat
def test_a_missing_base_is_pulled_from_a_registry(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    from tests.transfer.servers import Registry

    need_tool("docker-registry")
    with Registry(tmp_path / "registry") as registry:
        pb("push", "busybox", f"{registry.host}/base/busybox:1")
        fresh = make_pb(tmp_path / "fresh-store")
        ctx = write_context(tmp_path / "ctx", f"FROM {registry.host}/base/busybox:1\nRUN echo pulled > /p\n")
        log = build(fresh, ctx, "-t", "pulled:1").stderr
    assert f"[internal] pull {registry.host}/base/busybox:1" in log
    assert fresh("run", "--rm", "pulled:1", "cat", "/p").stdout == "pulled\n"
