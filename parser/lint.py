"""Parse-time warnings: the BuildKit build checks that need nothing but the Buildfile.

Each warning is named after its BuildKit rule (linter/ruleset.go) and uses its message, so the
`# check=skip=...` directive works the same. Checks that need the base image, the context or the
values of variables (UndefinedVar, CopyIgnoredFile, InvalidBaseImagePlatform, ...) are the
builder's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from parser.gotext import go_quote
from parser.instructions import (
    Arg,
    Buildfile,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    Stage,
    Workdir,
)
from parser.nodes import CheckConfig, Node, ParseWarning
from pybuild.errors import ParseError

_SECRET = re.compile(r"(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)", re.I)
_PUBLIC = re.compile(r"(?:_|^)(?:public)(?:_|$)", re.I)
_VARIABLE_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
AUTOMATIC_ARGS = frozenset({"TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT", "TARGETOSVERSION",
                            "TARGETSTAGE", "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
                            "BUILDOSVERSION"})
RESERVED_STAGE_NAMES = ("scratch", "context")


def _kebab(rule: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "-", rule).lower()


def _warn(rule: str, message: str, line: int) -> ParseWarning:
    return ParseWarning(rule, message, line, f"https://docs.docker.com/go/dockerfile/rule/{_kebab(rule)}/")


def _is_self_consistent(keyword: str) -> bool:
    return keyword in (keyword.lower(), keyword.upper())


def _casing(bf: Buildfile) -> Iterator[ParseWarning]:
    keywords = [inst.node.keyword for stage in bf.stages for inst in (stage.from_, *stage.instructions)]
    lower = sum(1 for k in keywords if _is_self_consistent(k) and k == k.lower())
    upper = sum(1 for k in keywords if _is_self_consistent(k) and k != k.lower())
    majority_lower = lower > upper
    for stage in bf.stages:
        for inst in (stage.from_, *stage.instructions):
            k = inst.node.keyword
            wrong = k != (k.lower() if majority_lower else k.upper())
            if wrong:
                yield _warn("ConsistentInstructionCasing", f"Command '{k}' should match the case of the command "
                            f"majority ({'lowercase' if majority_lower else 'uppercase'})", inst.line)


def _from_checks(bf: Buildfile, stage: Stage, seen: set[str]) -> Iterator[ParseWarning]:
    f = stage.from_
    args = f.node.args
    if len(args) == 3:
        keyword, as_word = f.node.keyword, args[1]
        if _is_self_consistent(keyword) and as_word != (as_word.lower() if keyword == keyword.lower() else as_word.upper()):
            yield _warn("FromAsCasing", f"'{as_word}' and '{keyword}' keywords' casing do not match", f.line)
        if args[2] != args[2].lower():
            yield _warn("StageNameCasing", f"Stage name '{args[2]}' should be lowercase", f.line)
    if f.name is not None:
        if f.name in seen:
            yield _warn("DuplicateStageName", f"Duplicate stage name {go_quote(f.name)}, stage names should be unique",
                        f.line)
        if f.name in RESERVED_STAGE_NAMES:
            yield _warn("ReservedStageName",
                        f"Stage name should not use the same name as reserved stage {go_quote(f.name)}", f.line)
        seen.add(f.name)
    declared = {d.name for a in bf.global_args for d in a.args} | AUTOMATIC_ARGS
    for text in (f.image, f.platform or ""):
        for name in _VARIABLE_NAME.findall(text):
            if name not in declared:
                yield _warn("UndefinedArgInFrom", f"FROM argument '{name}' is not declared", f.line)
    if f.platform is not None:
        if "$" not in f.platform:
            yield _warn("FromPlatformFlagConstDisallowed",
                        f"FROM --platform flag should not use constant value {go_quote(f.platform)}", f.line)
        elif f.platform in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
            yield _warn("RedundantTargetPlatform", f"Setting platform to predefined {f.platform} in FROM is "
                        "redundant as this is the default behavior", f.line)


def _set_before(bf: Buildfile, stage: Stage, kind: type[Instruction], upto: Instruction | None = None) -> bool:
    """Whether an instruction of `kind` (SHELL, WORKDIR) came before `upto` (or the stage's end):
    earlier in the stage, or in an earlier stage it is built FROM, whose state it inherits."""
    for inst in stage.instructions:
        if inst is upto:
            break
        if isinstance(inst, kind):
            return True
    base = stage.base.lower()
    parents = [s for s in bf.stages[: stage.index] if s.name == base]
    return bool(parents) and _set_before(bf, parents[-1], kind)


def _stage_checks(bf: Buildfile, stage: Stage) -> Iterator[ParseWarning]:
    last: dict[str, Instruction] = {}
    for inst in stage.instructions:
        if isinstance(inst, (Cmd, Entrypoint, Healthcheck)):
            if inst.keyword in last:
                yield _warn("MultipleInstructionsDisallowed", f"Multiple {inst.keyword} instructions should not be "
                            "used in the same stage because only the last one will be used", last[inst.keyword].line)
            last[inst.keyword] = inst
        if isinstance(inst, (Cmd, Entrypoint)) and inst.prepend_shell and not _set_before(bf, stage, Shell, inst):
            yield _warn("JSONArgsRecommended", f"JSON arguments recommended for {inst.keyword} to prevent "
                        "unintended behavior related to OS signals", inst.line)
        elif isinstance(inst, Maintainer):
            yield _warn("MaintainerDeprecated", "Maintainer instruction is deprecated in favor of using label",
                        inst.line)
        elif isinstance(inst, Workdir):
            if not inst.path.startswith(("/", "$")) and not _set_before(bf, stage, Workdir, inst):
                yield _warn("WorkdirRelativePath", f"Relative workdir {go_quote(inst.path)} can have unexpected "
                            "results if the base image changes", inst.line)
        elif isinstance(inst, Expose):
            yield from _expose_checks(inst)
        elif isinstance(inst, Onbuild) and inst.trigger is None and inst.node.child is not None:
            yield _onbuild_check(bf, inst, inst.node.child)
        yield from _pair_checks(inst)


def _onbuild_check(bf: Buildfile, inst: Onbuild, child: Node) -> ParseWarning:
    """pybuild's own check: BuildKit only parses a trigger when a child build runs it."""
    from parser.typed import parse_instruction

    try:
        parse_instruction(dataclasses.replace(child, heredocs=inst.node.heredocs), bf.file, bf.escape)
        message = "ONBUILD trigger will fail when it runs"
    except ParseError as e:
        message = f"ONBUILD trigger will fail when it runs: {e.reason}"
    return ParseWarning("InvalidOnbuildTrigger", message, inst.line)


def _expose_checks(inst: Expose) -> Iterator[ParseWarning]:
    for port in inst.ports:
        if "$" in port:
            continue
        if ":" in port:
            yield _warn("ExposeInvalidFormat", "EXPOSE instruction should not define an IP address or host-port "
                        f"mapping, found '{port}'", inst.line)
        _, slash, proto = port.partition("/")
        if slash and proto != proto.lower():
            yield _warn("ExposeProtoCasing", f"Defined protocol '{port}' in EXPOSE instruction should be lowercase",
                        inst.line)


def _pair_checks(inst: Instruction) -> Iterator[ParseWarning]:
    names: list[str] = []
    if isinstance(inst, (Env, Label)):
        for pair in inst.pairs:
            if pair.legacy:
                k = inst.keyword
                yield _warn("LegacyKeyValueFormat", f'"{k} key=value" should be used instead of legacy '
                            f'"{k} key value" format', inst.line)
                break
        if isinstance(inst, Env):
            names = [p.key for p in inst.pairs]
    elif isinstance(inst, Arg):
        names = [d.name for d in inst.args]
    for name in names:
        if _SECRET.search(name) and not _PUBLIC.search(name):
            yield _warn("SecretsUsedInArgOrEnv", f"Do not use ARG or ENV instructions for sensitive data "
                        f"({inst.keyword} {go_quote(name)})", inst.line)


def lint(bf: Buildfile) -> tuple[ParseWarning, ...]:
    """The parse-time warnings of a typed Buildfile (not yet filtered by `# check=`)."""
    found: list[ParseWarning] = list(_casing(bf))
    seen: set[str] = set()
    for arg in bf.global_args:
        found.extend(_pair_checks(arg))
    for stage in bf.stages:
        found.extend(_from_checks(bf, stage, seen))
        found.extend(_stage_checks(bf, stage))
    return tuple(found)


def apply_check(warnings: tuple[ParseWarning, ...], check: CheckConfig) -> tuple[ParseWarning, ...]:
    """The warnings `# check=skip=...` leaves, in line order."""
    if check.skip_all:
        return ()
    kept = [w for w in warnings if w.rule not in check.skip]
    return tuple(sorted(kept, key=lambda w: w.line))

