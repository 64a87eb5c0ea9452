"""End to end through `pybuild build`, the rows of ../shared/reference/dockerfile-features.md that
other tests check only below the CLI: each test builds one Buildfile covering several rows and
reads back the image's config, history and files (the row ids are in the comments)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.buildargs import platform_args
from tests.builder.buildtools import build, created_by, image, step_lines, write_context
from tests.conftest import Pybuild

pytestmark = pytest.mark.root


def cat(pb: Pybuild, ref: str, *paths: str) -> str:
    return pb("run", "--rm", "--entrypoint", "cat", ref, *paths).stdout


def test_arg_scope_precedence_and_inheritance(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """ARG GLOBAL=g
FROM busybox AS base
ARG INHERITED=from-base
ARG GLOBAL
FROM base AS child
ARG LIT
ARG EMPTY=
ARG UNSET
ARG TARGETARCH
ARG TARGETSTAGE
ENV E=env
ARG E=arg
RUN echo "INHERITED=$INHERITED GLOBAL=$GLOBAL LIT=$LIT EMPTY=[$EMPTY] UNSET=${UNSET-unset} \
TARGETARCH=$TARGETARCH TARGETSTAGE=$TARGETSTAGE E=$E host=$(hostname)" > /vars && cat /etc/hosts >> /vars
FROM busybox AS unrelated
RUN echo "INHERITED=[$INHERITED] GLOBAL=[$GLOBAL]" > /unrelated
FROM child AS final
COPY --from=unrelated /unrelated /unrelated
"""
    ctx = write_context(tmp_path / "ctx", text)
    build(pb, ctx, "-t", "args:1", "--build-arg", "LIT=$HOME", "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=builder")
    arch = platform_args()["TARGETARCH"]
    # F33 globals need re-declaring; F34 a --build-arg is literal, `ARG X=` is empty, a declared
    # ARG without a value is unset; F35 a stage FROM a stage inherits its ARGs, others do not;
    # F37 an ARG after an ENV wins for the build; F40 TARGETSTAGE names the target; F41 hostname
    assert cat(pb, "args:1", "/vars", "/unrelated") == (
        f"INHERITED=from-base GLOBAL=g LIT=$HOME EMPTY=[] UNSET=unset TARGETARCH={arch} TARGETSTAGE=final E=arg host=builder\n"
        "127.0.0.1\tlocalhost builder\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "INHERITED=[] GLOBAL=[]\n"
    )
    img = image(busybox_store, "args:1")
    assert img.config.config.env_dict()["E"] == "env" and "INHERITED" not in img.config.config.env_dict()  # F36, F37
    run = next(h for h in created_by(busybox_store, "args:1") if h.startswith("RUN") and "/vars" in h)
    assert run.startswith(  # F36: every ARG in scope, inherited ones first, with its build value
        f"RUN |8 INHERITED=from-base GLOBAL=g LIT=$HOME EMPTY= UNSET= TARGETARCH={arch} TARGETSTAGE=final E=arg /bin/sh -c echo"
    )


def test_metadata_rows_reach_the_config_and_the_running_container(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    text = """FROM busybox AS base
HEALTHCHECK CMD true
CMD ["base-cmd"]
LABEL base=1
FROM base
HEALTHCHECK NONE
SHELL ["/bin/sh", "-ec"]
RUN mkdir /data && echo "$0 $-" > /shell
VOLUME /data
RUN echo kept > /data/f
USER nobody:nogroup
RUN id > /tmp/id
USER 0
WORKDIR /w
RUN --mount=type=tmpfs,target=rel mount | grep -c ' /w/rel ' > /tmp/relative-target
STOPSIGNAL 9
EXPOSE 127.0.0.1:8080:80 53/UDP
ENTRYPOINT ["/bin/echo"]
"""
    ctx = write_context(tmp_path / "ctx", text)
    build(pb, ctx, "-t", "meta:2")
    c = image(busybox_store, "meta:2").config.config
    assert c.healthcheck == {"Test": ["NONE"]}  # F91: NONE disables the inherited check
    assert c.cmd is None and c.entrypoint == ("/bin/echo",)  # F84: ENTRYPOINT clears the inherited CMD
    assert c.labels == {"base": "1"} and c.stop_signal == "9" and c.volumes == {"/data": {}}
    assert c.exposed_ports == {"80/tcp": {}, "53/udp": {}}  # F86: a host part is dropped
    # F92 SHELL runs RUN; F87 changes under a VOLUME are kept; F82 `user:group` is only that
    # group; F60 a relative mount target is under WORKDIR
    out = pb("run", "--rm", "--entrypoint", "cat", "meta:2", "/shell", "/data/f", "/tmp/id", "/tmp/relative-target").stdout
    assert out == "/bin/sh ce\nkept\nuid=65534(nobody) gid=65534(nogroup)\n1\n"  # F82: the group given
    assert pb("run", "--rm", "meta:2", "hello").stdout == "hello\n"  # F85
    history = created_by(busybox_store, "meta:2")
    assert 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}' in history
    assert "EXPOSE [80/tcp 53/udp]" in history and "SHELL [/bin/sh -ec]" in history and "STOPSIGNAL 9" in history


def test_copy_from_an_image_reference_and_docker_name_normalisation(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    base = image(busybox_store, "busybox")
    text = f"""ARG REG=docker.io/library
FROM $REG/busybox:latest AS named
FROM busybox@{base.digest}
COPY --from=docker.io/library/busybox:latest /bin/busybox /copied-busybox
COPY --from=named /etc/passwd /passwd
"""
    ctx = write_context(tmp_path / "ctx", text, {".dockerignore": "*\n"})
    log = build(pb, ctx, "-t", "img:1").stderr
    assert f"FROM busybox@{base.digest}@" not in log
    # F44: `docker.io/library/busybox:latest` is the local busybox; F75: --from an image; F99:
    # .dockerignore (everything here) does not apply to --from
    assert pb("run", "--rm", "img:1", "cmp", "/bin/busybox", "/copied-busybox").returncode == 0
    assert "root:" in cat(pb, "img:1", "/passwd")


def test_onbuild_triggers_can_copy_from_a_stage_of_the_child_buildfile(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    parent = write_context(tmp_path / "parent", "FROM busybox\nONBUILD COPY --from=builder /a /from-builder\nONBUILD RUN echo ran > /ran\n")
    build(pb, parent, "-t", "onbuild-parent:1")
    child = write_context(tmp_path / "child", "FROM busybox AS builder\nRUN echo built > /a\nFROM onbuild-parent:1\nRUN cat /from-builder /ran\n")
    log = build(pb, child, "-t", "onbuild-child:1").stderr
    # F93: the trigger names a stage no instruction of the child uses; it is built for it
    assert "[builder 2/2] RUN echo built > /a" in step_lines(log, "DONE")
    assert "built\n" in log and "ran\n" in log
    assert image(busybox_store, "onbuild-child:1").config.config.on_build is None


def test_cli_network_quiet_progress_environment_build_args_and_dockerfile_name(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG FROM_ENV\nRUN ls /sys/class/net > /net && echo $FROM_ENV > /env\n")
    # F100: Dockerfile when there is no Buildfile; F101: --build-arg K from the environment
    proc = pb("build", "--progress", "quiet", "--network", "none", "--build-arg", "FROM_ENV", "-t", "cli:1", ctx, env={"FROM_ENV": "yes"})
    assert proc.stderr == "" and proc.stdout == ""
    assert cat(pb, "cli:1", "/net", "/env") == "lo\nyes\n"  # --network none: only loopback


def test_platform_device_security_and_ssh_are_refused_with_the_line(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    cases = {
        "FROM --platform=linux/s390x busybox\n": "pybuild builds only for this machine's platform",
        "FROM busybox\nRUN --security=insecure true\n": "RUN --security=insecure is not supported",
        "FROM busybox\nRUN --device=nvidia.com/gpu=all true\n": "RUN --device is not supported",
        "FROM busybox\nRUN --mount=type=ssh true\n": "RUN --mount=type=ssh is not supported",
    }
    for n, (text, message) in enumerate(cases.items()):
        proc = build(pb, write_context(tmp_path / f"c{n}", text), check=False)
        line = text.count("\n")
        assert proc.returncode == 1 and f"error: Buildfile:{line}: " in proc.stderr and message in proc.stderr, proc.stderr


def test_a_failed_build_leaves_a_store_that_fsck_accepts(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nRUN head -c 100000 /dev/zero > /big\nCOPY missing /x\n")
    proc = build(pb, ctx, "-t", "broken:2", check=False)
    assert proc.returncode == 1 and "#4 ERROR: Buildfile:3: \"missing\": not found" in proc.stderr
    assert "broken" not in pb("images").stdout
    assert pb("fsck").returncode == 0
    assert not [p for p in (busybox_store / "tmp").iterdir() if not p.name.startswith(".")]


def test_a_mode_change_of_a_source_misses_the_cache(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nCOPY f /f\n", {"f": "x"})
    os.chmod(ctx / "f", 0o644)
    build(pb, ctx, "-t", "mode:1")
    os.chmod(ctx / "f", 0o755)
    log = build(pb, ctx, "-t", "mode:2").stderr
    assert "[2/2] COPY f /f" in step_lines(log, "DONE") and "cache miss: source f changed" in log  # F102
