"""ARG/ENV scoping and precedence as BuildKit applies them (F32-F42, F101, F104)."""

from __future__ import annotations

import pytest

from builder.buildargs import (
    DEFAULT_PATH,
    MetaArgs,
    Scope,
    parse_build_args,
    platform_args,
    resolve_meta_args,
    run_history,
    source_date_epoch,
    split_env,
)
from pybuild.errors import ParseError

NO_META = MetaArgs(())


def declare(scope: Scope, *decls: tuple[str, str | None], build_args: dict[str, str] | None = None, meta: MetaArgs = NO_META) -> Scope:
    for name, default in decls:
        scope, _ = scope.with_arg(name, default, build_args=build_args or {}, meta=meta)
    return scope


def test_build_args_from_cli_and_environment() -> None:
    env = {"FROM_ENV": "e", "EMPTY": ""}
    assert parse_build_args(["A=1", "B=", "FROM_ENV", "EMPTY", "UNSET", "A=2", "C=x=y"], env) == {
        "A": "2",
        "B": "",
        "FROM_ENV": "e",
        "EMPTY": "",
        "C": "x=y",
    }
    with pytest.raises(ParseError):
        parse_build_args(["=v"], {})


def test_image_env_gets_a_default_path_only_when_missing() -> None:
    assert Scope.from_image_env([]).config_env == (("PATH", DEFAULT_PATH),)
    scope = Scope.from_image_env(["PATH=/bin", "HOME=/root", "BAD"])
    assert scope.config_env == (("PATH", "/bin"), ("HOME", "/root"), ("BAD", ""))
    assert split_env(["A=1", "A=2"]) == (("A", "2"),)


def test_charliecloud_argenv_flow() -> None:
    # test__Dockerfile.argenv: ARG defaults expand with earlier ARGs, ENV with ARGs and ENVs
    scope = declare(Scope.from_image_env(["PATH=/bin"]), ("chse_arg1_df", None), ("chse_arg2_df", "arg2"), ("chse_arg3_df", '"arg3 ${chse_arg2_df}"'))
    scope = scope.with_env([("chse_env1_df", "env1")])
    scope = scope.with_env([("chse_env2_df", "env2 " + scope.lookup()["chse_env1_df"])])
    assert scope.run_env() == [
        "PATH=/bin",
        "chse_arg2_df=arg2",
        "chse_arg3_df=arg3 arg2",
        "chse_env1_df=env1",
        "chse_env2_df=env2 env1",
    ]
    # ARGs are not in the image config; a declared-but-unset ARG is in no environment
    assert dict(scope.config_env) == {"PATH": "/bin", "chse_env1_df": "env1", "chse_env2_df": "env2 env1"}
    assert run_history(["/bin/sh", "-c", "env | sort"], scope) == (
        "RUN |3 chse_arg1_df= chse_arg2_df=arg2 chse_arg3_df=arg3 arg2 /bin/sh -c env | sort"
    )


def test_arg_value_precedence() -> None:
    meta = resolve_meta_args([("G", "global"), ("GUNSET", None)], {})
    base = Scope.from_image_env([])
    # the build-arg wins and is taken literally
    assert declare(base, ("A", "default"), build_args={"A": "$literal"}).lookup()["A"] == "$literal"
    # otherwise the default, expanded where the ARG stands
    s = declare(base.with_env([("E", "e")]), ("A", "x${E}y"))
    assert s.lookup()["A"] == "xey"
    # otherwise the global of the same name, but only when re-declared
    assert "G" not in base.lookup()
    assert declare(base, ("G", None), meta=meta).lookup()["G"] == "global"
    # declared-but-unset: not in the environment at all; `ARG X=` is the empty string
    assert "GUNSET" not in declare(base, ("GUNSET", None), meta=meta).lookup()
    assert declare(base, ("X", "")).lookup()["X"] == ""
    # a build-arg nobody declares is not visible
    assert "NOPE" not in declare(base, ("A", "1"), build_args={"NOPE": "x"}).lookup()


def test_arg_is_unset_before_its_line() -> None:
    s = Scope.from_image_env([])
    assert "A" not in s.lookup()
    s = declare(s, ("A", "1"), ("B", "$A-2"))  # one ARG line: each default sees the ones before
    assert s.lookup()["B"] == "1-2"


def test_later_definition_wins_between_env_and_arg() -> None:
    s = Scope.from_image_env(["V=from-image"])
    s = declare(s, ("V", "from-arg"))
    assert s.lookup()["V"] == "from-arg"  # BuildKit: ARG after ENV re-sets the build value
    assert dict(s.config_env)["V"] == "from-image"  # the image keeps its ENV
    s = s.with_env([("V", "from-env")])
    assert s.lookup()["V"] == "from-env"
    assert run_history(["true"], s) == "RUN |1 V=from-env true"


def test_meta_args_expand_in_order_and_take_build_args() -> None:
    meta = resolve_meta_args(
        [("BASE", "alpine"), ("TAG", "3.${MINOR:-17}"), ("IMAGE", "${BASE}:${TAG}"), ("ARCHED", "${TARGETARCH}")],
        {"BASE": "debian"},
        builtins={"TARGETARCH": "amd64"},
    )
    env = meta.env()
    assert env["IMAGE"] == "debian:3.17"  # the build-arg replaced BASE before IMAGE was expanded
    assert env["ARCHED"] == "amd64"
    assert meta.get("TARGETARCH") == (True, "amd64")
    assert meta.get("NOT") == (False, None)


def test_platform_args_are_global_only() -> None:
    args = platform_args("final")
    assert args["TARGETOS"] == "linux" and args["TARGETSTAGE"] == "final"
    assert args["TARGETPLATFORM"].startswith("linux/" + args["TARGETARCH"])
    meta = resolve_meta_args([], {}, builtins=args)
    stage = Scope.from_image_env([])
    assert "TARGETARCH" not in stage.lookup()
    assert declare(stage, ("TARGETARCH", None), meta=meta).lookup()["TARGETARCH"] == args["TARGETARCH"]


def test_proxy_build_args_reach_run_without_declaration_but_not_history() -> None:
    s = declare(Scope.from_image_env([]), ("A", "1"))
    env = s.run_env({"http_proxy": "http://proxy:3128", "OTHER": "x"})
    assert "http_proxy=http://proxy:3128" in env and not any(e.startswith("OTHER=") for e in env)
    assert run_history(["true"], s) == "RUN |1 A=1 true"
    declared = declare(s, ("http_proxy", None), build_args={"http_proxy": "p"})
    assert run_history(["true"], declared) == "RUN |2 A=1 http_proxy=p true"
    assert declared.run_env({"http_proxy": "p"}).count("http_proxy=p") == 1


def test_stage_from_stage_inherits_args_and_env() -> None:
    parent = declare(Scope.from_image_env([]), ("VERSION", "1.2"))
    child = parent  # FROM parent: the child starts from the parent's scope
    assert child.lookup()["VERSION"] == "1.2"
    assert run_history(["make"], child) == "RUN |1 VERSION=1.2 make"


def test_source_date_epoch_from_build_arg_global_or_environment() -> None:
    assert source_date_epoch(NO_META, {"SOURCE_DATE_EPOCH": "10"}, {"SOURCE_DATE_EPOCH": "20"}) == 10
    meta = resolve_meta_args([("SOURCE_DATE_EPOCH", "30")], {})
    assert source_date_epoch(meta, {}, {"SOURCE_DATE_EPOCH": "20"}) == 30
    assert source_date_epoch(NO_META, {}, {"SOURCE_DATE_EPOCH": "20"}) == 20
    assert source_date_epoch(NO_META, {}, {}) is None
    with pytest.raises(ParseError, match="invalid SOURCE_DATE_EPOCH"):
        source_date_epoch(NO_META, {"SOURCE_DATE_EPOCH": "yesterday"}, {})
