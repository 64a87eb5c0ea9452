"""Pure parts of the build: stage planning (F43-F48), metadata instructions (F81-F94) and the
progress formats."""

from __future__ import annotations

import pytest

from builder.buildargs import MetaArgs, Scope, resolve_meta_args
from builder.imageconfig import StageConfig, apply_metadata, expose_ports, workdir_path
from builder.plan import plan_build
from layerstore.oci import ContainerConfig
from parser import parse_buildfile
from pybuild.errors import BuildError, ParseErrors


def plan(text: str, target: str | None = None, build_args: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    bf = parse_buildfile(text)
    meta = resolve_meta_args([(a.name, a.default) for arg in bf.global_args for a in arg.args], build_args or {})
    return plan_build(bf, meta, target)


MULTI = """ARG IMG=busybox
FROM ${IMG} AS base
FROM busybox AS assets
FROM base AS Build
RUN --mount=type=bind,from=assets,target=/a true
FROM scratch AS unused
FROM busybox
COPY --from=BUILD /x /x
COPY --from=0 /y /y
"""


def test_target_prunes_to_the_stages_it_reaches() -> None:
    p = plan(MULTI)
    assert p.target == 4 and p.order == (0, 1, 2, 4)
    assert p.stages[0].base.ref == "busybox" and p.stages[2].base.stage == 0
    assert p.stages[2].deps == {1} and p.stages[4].deps == {0, 2}
    assert plan(MULTI, target="base").order == (0,)
    assert plan(MULTI, target="BUILD").order == (0, 1, 2)
    assert plan(MULTI, target="3").order == (3,)


def test_mount_from_a_later_stage_is_an_error() -> None:
    with pytest.raises(BuildError, match="needs to be defined before the current stage"):
        plan("FROM busybox AS a\nRUN --mount=from=b,target=/x true\nFROM busybox AS b\nFROM a\n")


def test_from_is_expanded_with_global_args_only() -> None:
    p = plan("ARG IMG=busybox\nFROM $IMG:${TAG:-1}\n", build_args={"IMG": "alpine"})
    assert p.stages[0].base.ref == "alpine:1"
    assert plan("FROM SCRATCH\n").stages[0].base.kind == "scratch"
    with pytest.raises(BuildError, match="should not be blank"):
        plan("ARG EMPTY\nFROM $EMPTY\n")
    with pytest.raises(BuildError, match="target stage 'nope' could not be found"):
        plan("FROM busybox\n", target="nope")
    with pytest.raises(ParseErrors, match="variable expansion is not supported for --from"):
        plan("FROM busybox\nARG S=x\nCOPY --from=$S /a /a\n")


def test_duplicate_stage_names_the_later_wins() -> None:
    p = plan("FROM busybox AS a\nFROM alpine AS a\nFROM a\n")
    assert p.stages[2].base.stage == 1 and p.order == (1, 2)


def sc(**config: object) -> StageConfig:
    return StageConfig(ContainerConfig(**config), Scope()).with_scope(Scope.from_image_env(["PATH=/bin"]))  # type: ignore[arg-type]


def apply(text: str, state: StageConfig | None = None) -> tuple[StageConfig, str]:
    bf = parse_buildfile("FROM busybox\n" + text)
    current = state or sc()
    created = ""
    for instruction in bf.stages[0].instructions:
        current, created = apply_metadata(instruction, current, build_args={}, meta=MetaArgs(()))
    return current, created


def test_cmd_and_entrypoint_rules() -> None:
    s, created = apply('SHELL ["/bin/bash", "-c"]\nCMD echo $HOME')
    assert s.config.cmd == ("/bin/bash", "-c", "echo $HOME") and created == 'CMD ["/bin/bash" "-c" "echo $HOME"]'
    inherited = sc(cmd=("base",))
    s, _ = apply('ENTRYPOINT ["run"]', inherited)
    assert s.config.cmd is None
    s, _ = apply('CMD ["mine"]\nENTRYPOINT ["run"]', inherited)
    assert s.config.cmd == ("mine",)
    s, created = apply("ENTRYPOINT []", sc(entrypoint=("x",)))
    assert s.config.entrypoint is None and created == "ENTRYPOINT []"
    s, _ = apply('ENTRYPOINT ["run"]')
    assert not s.config.args_escaped  # BuildKit sets ArgsEscaped for CMD only


def test_history_texts_are_gos_formatting_of_buildkits_values() -> None:
    _, created = apply('SHELL ["/bin/sh", "-ec"]')
    assert created == "SHELL [/bin/sh -ec]"
    _, created = apply("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f http://x/ || exit 1")
    assert created == 'HEALTHCHECK &{["CMD-SHELL" "curl -f http://x/ || exit 1"] "1m30s" "500ms" "0s" "0s" \'\\x03\'}'
    _, created = apply("HEALTHCHECK NONE")
    assert created == 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'


def test_env_snapshot_and_labels() -> None:
    s, created = apply("ENV abc=hello\nENV abc=bye def=$abc")
    assert s.scope.lookup()["def"] == "hello" and created == "ENV abc=bye def=hello"
    s, created = apply('LABEL "a b"="c d" e=f')
    assert s.config.labels == {"a b": "c d", "e": "f"}


def test_expose_volume_stopsignal() -> None:
    assert expose_ports(["80", "53/UDP", "8000-8002/tcp"], "B:1") == ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
    with pytest.raises(BuildError, match="invalid proto"):
        expose_ports(["80/xyz"], "B:1")
    with pytest.raises(BuildError, match="invalid containerPort: 9-1"):
        expose_ports(["9-1"], "B:1")
    with pytest.raises(BuildError, match="invalid containerPort: 70000"):
        expose_ports(["70000"], "B:1")
    # BuildKit's parsePortSpec: an ip and a host port are checked and dropped; port 0 is a port
    assert expose_ports(["127.0.0.1:8080:80", "9000-9001:90-91/udp", "0"], "B:1") == ["80/tcp", "90/udp", "91/udp", "0/tcp"]
    with pytest.raises(BuildError, match="invalid ranges specified"):
        expose_ports(["1-3:80-81"], "B:1")
    s, created = apply("ARG P=81\nEXPOSE 80 $P/UDP 80")
    assert created == "EXPOSE [80/tcp 81/udp 80/tcp]" and s.config.exposed_ports == {"80/tcp": {}, "81/udp": {}}
    with pytest.raises(BuildError, match="invalid signal"):
        apply("ARG S=SIGNOPE\nSTOPSIGNAL $S")
    s, created = apply("VOLUME /a /b")
    assert s.config.volumes == {"/a": {}, "/b": {}} and created == "VOLUME [/a /b]"


@pytest.mark.parametrize(
    ("current", "path", "result"),
    [("/", "a", "/a"), ("/a", "b/c", "/a/b/c"), ("/a/b", "/x", "/x"), ("/a", "..", "/"), ("/a", "./b/", "/a/b"), ("/", "//x", "/x")],
)
def test_workdir_chains_relative_paths(current: str, path: str, result: str) -> None:
    assert workdir_path(current, path) == result
