"""The typed level: what each instruction class holds, flag rules, mounts, stages."""

from __future__ import annotations

import pytest

import parser
from parser import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Label,
    Maintainer,
    Mount,
    MountError,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from parser.shell import expand_word
from pybuild.errors import ParseErrors


def stage0(body: str, base: str = "FROM alpine\n") -> tuple[parser.Instruction, ...]:
    return parser.parse_buildfile(base + body).stages[0].instructions


def only(body: str) -> parser.Instruction:
    (inst,) = stage0(body)
    return inst


def errors_of(text: str) -> list[str]:
    with pytest.raises(ParseErrors) as info:
        parser.parse_buildfile(text, "Buildfile")
    return [e.reason for e in info.value.errors]


def test_run_shell_and_exec_forms() -> None:
    shell = only("RUN echo $HOME && ls\n")
    assert isinstance(shell, Run)
    assert shell.command == ("echo $HOME && ls",) and shell.prepend_shell and shell.shell_text == "echo $HOME && ls"
    exec_form = only('RUN ["ls", "-l", "$HOME"]\n')
    assert isinstance(exec_form, Run)
    assert exec_form.command == ("ls", "-l", "$HOME") and not exec_form.prepend_shell
    assert exec_form.shell_text is None


def test_run_flags_are_typed() -> None:
    run = only("RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=secret,id=npm,"
               "target=/root/.npmrc,required --network=none --security=insecure --device=nvidia.com/gpu=all make\n")
    assert isinstance(run, Run)
    assert run.network == "none" and run.security == "insecure"
    assert [d.name for d in run.devices] == ["nvidia.com/gpu=all"]
    cache, secret = (spec.resolve(lambda v: v) for spec in run.mounts)
    assert cache == Mount(type="cache", target="/var/cache/apt", sharing="locked", readonly=False)
    assert secret == Mount(type="secret", cache_id="npm", target="/root/.npmrc", required=True, readonly=True)


def test_run_defaults() -> None:
    run = only("RUN true\n")
    assert isinstance(run, Run)
    assert (run.mounts, run.network, run.security, run.devices, run.heredocs) == ((), "default", "sandbox", (), ())


def test_mount_values_stay_unexpanded_for_the_builder() -> None:
    run = only("RUN --mount=type=bind,source=$SRC,target=/src,ro=$RO make\n")
    assert isinstance(run, Run)
    (spec,) = run.mounts
    assert spec.fields == (("type", "bind"), ("source", "$SRC"), ("target", "/src"), ("ro", "$RO"))
    env = {"SRC": "./app", "RO": "false"}
    mount = spec.resolve(lambda v: expand_word(v, env))
    assert (mount.source, mount.readonly) == ("./app", False)
    with pytest.raises(MountError, match="invalid value for ro: maybe"):
        spec.resolve(lambda v: expand_word(v, {"RO": "maybe"}))


@pytest.mark.parametrize(
    "mount, expected",
    [
        ("target=/x", Mount(target="/x", readonly=True)),
        ("type=bind,target=/x,rw", Mount(target="/x", readonly=False)),
        ("type=tmpfs,dst=/t,size=64m", Mount(type="tmpfs", target="/t", size_limit=64 << 20, readonly=False)),
        ("type=cache,target=/c,mode=0700,uid=1000,gid=1000,id=pip,from=base,source=/seed",
         Mount(type="cache", target="/c", mode=0o700, uid=1000, gid=1000, cache_id="pip", from_="base",
               source="/seed", readonly=False)),
        ("type=ssh,required=true", Mount(type="ssh", required=True, readonly=True)),
        ("type=secret,id=t,env=TOKEN", Mount(type="secret", cache_id="t", env="TOKEN", readonly=True)),
        ("TYPE=Cache,Target=/x,READONLY", Mount(type="cache", target="/x", readonly=True)),
    ],
)
def test_mount_fields(mount: str, expected: Mount) -> None:
    run = only(f"RUN --mount={mount} true\n")
    assert isinstance(run, Run)
    assert run.mounts[0].resolve(lambda v: v) == expected


def test_cmd_and_entrypoint_empty_forms() -> None:
    cmd_empty, entry_empty, entry_bare, cmd_bare = stage0("CMD []\nENTRYPOINT []\nENTRYPOINT\nCMD\n")
    assert isinstance(cmd_empty, Cmd) and cmd_empty.command == () and not cmd_empty.prepend_shell
    assert isinstance(entry_empty, Entrypoint) and entry_empty.command is None and not entry_empty.prepend_shell
    assert isinstance(entry_bare, Entrypoint) and entry_bare.command is None and entry_bare.prepend_shell
    assert isinstance(cmd_bare, Cmd) and cmd_bare.command == () and cmd_bare.prepend_shell


def test_copy_fields() -> None:
    copy = only("COPY --from=Build --chown=1000:1000 --chmod=u+x --link --exclude=*.tmp --exclude=.git "
                "--parents ./src/./app/ lib/ /opt/\n")
    assert isinstance(copy, Copy)
    assert copy.sources == ("./src/./app/", "lib/") and copy.dest == "/opt/"
    assert (copy.from_, copy.chown, copy.chmod, copy.link, copy.parents) == ("Build", "1000:1000", "u+x", True, True)
    assert copy.exclude == ("*.tmp", ".git") and not copy.json_form and copy.heredoc_sources == ()


def test_copy_json_form_keeps_spaces() -> None:
    copy = only('COPY ["my file.txt", "other", "/dst dir/"]\n')
    assert isinstance(copy, Copy)
    assert copy.sources == ("my file.txt", "other") and copy.dest == "/dst dir/" and copy.json_form


def test_copy_heredoc_sources() -> None:
    copy = only("COPY <<-'A' src <<B /dst/\n\tquoted $X\n\tA\nplain $X\nB\n")
    assert isinstance(copy, Copy)
    assert copy.sources == ("src",)
    (a, b) = copy.heredoc_sources
    assert (a.name, a.data, a.expand) == ("A", "quoted $X\n", False)  # <<- strips the tabs
    assert (b.name, b.data, b.expand) == ("B", "plain $X\n", True)


def test_add_fields() -> None:
    add = only("ADD --keep-git-dir=true --checksum=sha256:abc --unpack https://x/y.tar.gz /y\n")
    assert isinstance(add, Add)
    assert (add.keep_git_dir, add.checksum, add.unpack) == (True, "sha256:abc", True)
    plain = only("ADD a.tar /x\n")
    assert isinstance(plain, Add) and plain.unpack is None and not plain.keep_git_dir and plain.checksum is None


def test_bool_flags_accept_any_case() -> None:
    copy = only("COPY --link=TRUE a b\n")
    assert isinstance(copy, Copy) and copy.link
    copy = only("COPY --link=False a b\n")
    assert isinstance(copy, Copy) and not copy.link


def test_env_label_arg_pairs() -> None:
    env, legacy, label, arg = stage0('ENV A=1 B="x y"\nENV K some value\nLABEL "a b"=c\nARG X Y= Z=1\n')
    assert isinstance(env, Env) and [(p.key, p.value, p.legacy) for p in env.pairs] == [
        ("A", "1", False), ("B", '"x y"', False)]
    assert isinstance(legacy, Env) and [(p.key, p.value, p.legacy) for p in legacy.pairs] == [("K", "some value", True)]
    assert isinstance(label, Label) and [(p.key, p.value) for p in label.pairs] == [('"a b"', "c")]
    assert isinstance(arg, Arg) and [(d.name, d.default) for d in arg.args] == [("X", None), ("Y", ""), ("Z", "1")]
    assert expand_word(env.pairs[1].value, {}) == "x y"


def test_healthcheck() -> None:
    check, exec_check, none = stage0("HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s "
                                     "--start-interval=2s --retries=5 CMD curl -f http://x/ || exit 1\n"
                                     'HEALTHCHECK CMD ["curl", "-f", "http://x/"]\nHEALTHCHECK none\n')
    assert isinstance(check, Healthcheck)
    assert check.test == ("CMD-SHELL", "curl -f http://x/ || exit 1")
    assert (check.interval_ns, check.timeout_ns, check.start_period_ns, check.start_interval_ns, check.retries) == (
        90_000_000_000, 500_000_000, 0, 2_000_000_000, 5)
    assert isinstance(exec_check, Healthcheck) and exec_check.test == ("CMD", "curl", "-f", "http://x/")
    assert isinstance(none, Healthcheck) and none.test == ("NONE",)


def test_onbuild_keeps_the_trigger_text_and_parses_it() -> None:
    onbuild, with_heredoc, unknown = stage0("ONBUILD COPY --chown=1:1 . /app\n"
                                            "onbuild RUN <<EOF\necho $X\nEOF\n"
                                            "ONBUILD RUNN x\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.expression == "COPY --chown=1:1 . /app"
    assert isinstance(onbuild.trigger, Copy) and onbuild.trigger.chown == "1:1"
    assert isinstance(with_heredoc, Onbuild)
    assert with_heredoc.expression == "RUN <<EOF\necho $X\nEOF"
    assert isinstance(with_heredoc.trigger, Run) and with_heredoc.trigger.heredocs[0].content == "echo $X\n"
    assert isinstance(unknown, Onbuild) and unknown.trigger is None  # BuildKit fails only when it fires


def test_other_instructions() -> None:
    expose, volume, workdir, user, shell, stop, maintainer = stage0(
        'EXPOSE 80/tcp $PORT\nVOLUME /a /b\nWORKDIR /app dir\nUSER app:staff\nSHELL ["pwsh", "-c"]\n'
        "STOPSIGNAL SIGQUIT\nMAINTAINER Jane <j@x>\n")
    assert isinstance(expose, Expose) and expose.ports == ("80/tcp", "$PORT")
    assert isinstance(volume, Volume) and volume.paths == ("/a", "/b") and not volume.json_form
    assert isinstance(workdir, Workdir) and workdir.path == "/app dir"
    assert isinstance(user, User) and user.user == "app:staff"
    assert isinstance(shell, Shell) and shell.shell == ("pwsh", "-c")
    assert isinstance(stop, Stopsignal) and stop.signal == "SIGQUIT"
    assert isinstance(maintainer, Maintainer) and maintainer.maintainer == "Jane <j@x>"


def test_locations() -> None:
    bf = parser.parse_buildfile("FROM alpine\n\n  RUN a \\\n  b\nCOPY x y\n", "dir/Buildfile")
    run, copy = bf.stages[0].instructions
    assert (run.file, run.line, run.column, run.end_line) == ("dir/Buildfile", 3, 3, 4)
    assert str(copy.location) == "dir/Buildfile:5"
    assert run.original == "RUN a   b"


def test_stages_and_global_args() -> None:
    bf = parser.parse_buildfile("ARG V=1\nFROM alpine:$V AS Base\nARG V\nFROM base\nRUN x\nFROM scratch AS out\n")
    assert [a.args[0].name for a in bf.global_args] == ["V"]
    assert [(s.index, s.name, s.base) for s in bf.stages] == [(0, "base", "alpine:$V"), (1, None, "base"),
                                                               (2, "out", "scratch")]
    assert isinstance(bf.stages[0].instructions[0], Arg)
    assert bf.stage("BASE") is bf.stages[0] and bf.stage("1") is bf.stages[1] and bf.stage("nope") is None


def test_flags_ignored_where_buildkit_ignores_them() -> None:
    arg, stop, none = stage0("ARG --whatever A=1\nSTOPSIGNAL --x SIGTERM\nHEALTHCHECK --interval=x NONE\n")
    assert isinstance(arg, Arg) and isinstance(stop, Stopsignal) and isinstance(none, Healthcheck)


def test_every_bad_flag_of_an_instruction_is_reported() -> None:
    assert errors_of("FROM a\nCOPY --chwon=1 --lnk --link=x a b\n") == [
        "unknown flag: --chwon", "unknown flag: --lnk", "expecting boolean value for flag --link, not: x"]


def test_every_error_in_the_file_is_reported_in_line_order() -> None:
    assert errors_of('FROM a\nCMD [1]\nRUNN x\nENV\nCOPY a\nFROM a AS -x\n') == [
        "when using JSON array syntax, arrays must be comprised of strings only",
        "unknown instruction: RUNN",
        "ENV requires at least one argument",
        "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        "invalid name for build stage: \"-x\", name can't start with a number or contain symbols",
    ]


def test_unknown_instruction_hint() -> None:
    with pytest.raises(ParseErrors) as info:
        parser.parse_buildfile("FROM a\nWRKDIR /x\n")
    assert info.value.errors[0].hint == "did you mean WORKDIR?"


def test_escape_directive_applies_to_word_checks() -> None:
    bf = parser.parse_buildfile("# escape=`\nFROM a\nENV P=C:\\dir\\ Q=x`\"y\n")
    (env,) = bf.stages[0].instructions
    assert isinstance(env, Env)
    assert [expand_word(p.value, {}, escape="`") for p in env.pairs] == ["C:\\dir\\", 'x"y']


def test_parse_instructions_has_no_stage_rules() -> None:
    triggers = parser.parse_instructions("RUN make\nCOPY . /app\n")
    assert [type(t) for t in triggers] == [Run, Copy]


def test_a_trigger_that_will_fail_is_a_warning_not_an_error() -> None:
    bf = parser.parse_buildfile("FROM a\nONBUILD RUNN x\n")
    assert [(w.rule, w.message) for w in bf.warnings] == [
        ("InvalidOnbuildTrigger", "ONBUILD trigger will fail when it runs: unknown instruction: RUNN")]


def test_state_inherited_from_a_parent_stage_silences_warnings() -> None:
    bf = parser.parse_buildfile('FROM a AS base\nSHELL ["/bin/bash", "-c"]\nWORKDIR /app\n'
                                "FROM base\nWORKDIR sub\nCMD run\n"
                                "FROM a\nWORKDIR rel\nCMD run\n")
    assert sorted((w.line, w.rule) for w in bf.warnings) == [(8, "WorkdirRelativePath"), (9, "JSONArgsRecommended")]


@pytest.mark.parametrize(
    "text, paths, contents",
    [  # BuildKit's TestCopyHeredoc
        ("COPY /foo /bar", ("/foo",), ()),
        ("COPY <<EOF /bar\nEOF", (), (("EOF", "", True),)),
        ("COPY <<EOF /bar\nTESTING\nEOF", (), (("EOF", "TESTING\n", True),)),
        ("COPY <<-EOF /bar\n\tTESTING\nEOF", (), (("EOF", "TESTING\n", True),)),
        ("COPY <<'EOF' /bar\nTESTING\nEOF", (), (("EOF", "TESTING\n", False),)),
        ("COPY <<EOF1 <<EOF2 /bar\nthis is the first file\nEOF1\nthis is the second file\nEOF2", (),
         (("EOF1", "this is the first file\n", True), ("EOF2", "this is the second file\n", True))),
        ("COPY <<EOF foo.txt /bar\nthis is inline\nEOF", ("foo.txt",), (("EOF", "this is inline\n", True),)),
        ('COPY <<EOF /quotes\n"quotes"\nEOF', (), (("EOF", '"quotes"\n', True),)),
    ],
)
def test_buildkit_copy_heredoc_cases(text: str, paths: tuple[str, ...], contents: tuple[tuple[str, str, bool]]) -> None:
    (copy,) = parser.parse_instructions(text)
    assert isinstance(copy, Copy)
    assert copy.sources == paths
    assert tuple((h.name, h.data, h.expand) for h in copy.heredoc_sources) == contents


@pytest.mark.parametrize(
    "text, shell, command, files",
    [  # BuildKit's TestRunHeredoc
        ('RUN ["ls", "/"]', False, ("ls", "/"), ()),
        ('RUN ["<<EOF"]', False, ("<<EOF",), ()),
        ("RUN ls /", True, ("ls /",), ()),
        ("RUN <<EOF\nls /\nwhoami\nEOF", True, ("<<EOF",), (("EOF", "ls /\nwhoami\n", False),)),
        ("RUN <<'EOF' | python\nprint(\"hello\")\nprint(\"world\")\nEOF", True, ("<<'EOF' | python",),
         (("EOF", 'print("hello")\nprint("world")\n', False),)),
        ("RUN <<-EOF\n\techo test\nEOF", True, ("<<-EOF",), (("EOF", "\techo test\n", True),)),
    ],
)
def test_buildkit_run_heredoc_cases(text: str, shell: bool, command: tuple[str, ...],
                                    files: tuple[tuple[str, str, bool], ...]) -> None:
    (run,) = parser.parse_instructions(text)
    assert isinstance(run, Run)
    assert (run.prepend_shell, run.command) == (shell, command)
    assert tuple((h.name, h.content, h.chomp) for h in run.heredocs) == files


@pytest.mark.parametrize(
    "text, error",
    [  # BuildKit's TestErrorCases and friends
        ("COPY\t\n\t\tquux \\\n      bar", "COPY requires at least two arguments"),
        ("ONBUILD FROM scratch", "FROM isn't allowed as an ONBUILD trigger"),
        ("MAINTAINER --boo joe@example.com", "unknown flag: --boo"),
        ("ONBUILD ONBUILD RUN touch foobar", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FOO bar", "unknown instruction: FOO"),
        ("foo bar", "unknown instruction: foo"),
        ("COPY /foo <<EOF\nEOF", "COPY cannot accept a heredoc as a destination"),
        ("HEALTHCHECK --interval=50ns CMD true", "cannot be less than 1ms"),
    ],
)
def test_buildkit_instruction_error_cases(text: str, error: str) -> None:
    with pytest.raises(ParseErrors) as info:
        parser.parse_instructions(text)
    assert error in info.value.errors[0].reason


@pytest.mark.parametrize("keyword", ["MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL"])
def test_exactly_one_argument(keyword: str) -> None:
    with pytest.raises(ParseErrors, match=f"{keyword} requires exactly one argument"):
        parser.parse_instructions(keyword)


@pytest.mark.parametrize("keyword", ["ENV", "LABEL", "ONBUILD", "HEALTHCHECK", "EXPOSE", "VOLUME"])
def test_at_least_one_argument(keyword: str) -> None:
    with pytest.raises(ParseErrors, match=f"{keyword} requires at least one argument"):
        parser.parse_instructions(keyword)


def test_zero_intervals_mean_the_default() -> None:
    (check,) = parser.parse_instructions("HEALTHCHECK --interval=0ms --timeout=1ms CMD true")
    assert isinstance(check, Healthcheck) and (check.interval_ns, check.timeout_ns) == (0, 1_000_000)
