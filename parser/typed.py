"""Nodes to typed instructions (BuildKit's `instructions.ParseInstruction`) and stages.

Each `_parse_<keyword>` checks what BuildKit's `parse<Keyword>` checks, in the same order and with
the same messages (flags, arity, forms); the errors carry the node's line and the column of the
word at fault. `to_buildfile` groups the instructions into stages and collects every error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import TypedDict, TypeVar

from parser.expansions import syntax_error
from parser.flags import (
    ADD_FLAGS,
    COPY_FLAGS,
    FROM_FLAGS,
    HEALTHCHECK_FLAGS,
    NO_FLAGS,
    RUN_FLAGS,
    Flag,
    Values,
    parse_flags,
)
from parser.gotext import format_duration, go_quote, parse_duration, parse_int, suggest, trim_space
from parser.heredoc import HeredocError, Marker, parse_marker
from parser.instructions import (
    INSTRUCTION_CLASSES,
    Add,
    Arg,
    ArgDef,
    Buildfile,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    HeredocSource,
    Instruction,
    KeyValue,
    Label,
    Location,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stage,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from parser.mounts import NETWORK_MODES, SECURITY_MODES, Device, MountError, MountSpec, check_choice
from parser.nodes import Node, NodeTree, chomp
from parser.shell import expand_word
from parser.signals import parse_signal
from pybuild.errors import ParseError, ParseErrors

_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_ONBUILD_PREFIX = re.compile(r"[\t\n\f\r ]*onbuild[\t\n\f\r ]*", re.I)
_VARIABLE = re.compile(r"\$.", re.S)
MIN_INTERVAL_NS = 1_000_000  # container.MinimumDuration
T = TypeVar("T")


class _Base(TypedDict):
    location: Location
    original: str
    node: Node


class _Files(TypedDict):
    sources: tuple[str, ...]
    dest: str
    heredoc_sources: tuple[HeredocSource, ...]
    json_form: bool
    chown: str | None
    chmod: str | None
    link: bool
    exclude: tuple[str, ...]


class _Request:
    """One node being converted: its file, and errors located at its words."""

    def __init__(self, node: Node, file: str, escape: str) -> None:
        self.node = node
        self.file = file
        self.escape = escape
        self.args = list(node.args) if node.child is None else [node.child.keyword, *node.child.args]

    def error(self, message: str, *, at_args: bool = False, word: str | None = None, flag: str | None = None,
              nth: int = 0, hint: str | None = None) -> ParseError:
        """A ParseError at the keyword, the arguments, an argument word, or the nth --flag."""
        node = self.node
        offset = node.positions.keyword
        if flag is not None:
            hits = [i for i, f in enumerate(node.flags) if f[2:].partition("=")[0] == flag]
            if nth < len(hits) and hits[nth] < len(node.positions.flags):
                offset = node.positions.flags[hits[nth]]
        elif word is not None and (found := node.original.find(word, node.positions.args)) >= 0:
            offset = found
        elif at_args or word is not None:
            offset = node.positions.args
        line, column = node.at(offset)
        return ParseError(message, file=self.file, line=line or node.start_line, column=column or node.column, hint=hint)

    def flags(self, declared: tuple[Flag, ...]) -> Values:
        return parse_flags(self.node, declared, self.file)

    def base(self) -> _Base:
        node = self.node
        return {"location": Location(self.file, node.start_line, node.column, node.end_line),
                "original": node.original, "node": node}


def _at_least_one(req: _Request, keyword: str) -> None:
    if not req.args:
        raise req.error(f"{keyword} requires at least one argument")


def _exactly_one(req: _Request, keyword: str) -> None:
    if len(req.args) != 1:
        raise req.error(f"{keyword} requires exactly one argument")


def _json_args(req: _Request, args: list[str]) -> tuple[str, ...]:
    """handleJSONArgs: exec-form items as they are, shell-form words joined into one string."""
    if not args:
        return ()
    return tuple(args) if req.node.json else (" ".join(args),)


def _pairs(req: _Request, keyword: str) -> tuple[KeyValue, ...]:
    _at_least_one(req, keyword)
    args = req.args
    out = []
    for i in range(0, len(args) - len(args) % 3, 3):
        if not args[i]:
            raise req.error(f"{keyword} names can not be blank", at_args=True)
        out.append(KeyValue(key=args[i], value=args[i + 1], legacy=args[i + 2] == ""))
    return tuple(out)


def _parse_env(req: _Request) -> Instruction:
    req.flags(NO_FLAGS)
    return Env(pairs=_pairs(req, "ENV"), **req.base())


def _parse_label(req: _Request) -> Instruction:
    req.flags(NO_FLAGS)
    return Label(pairs=_pairs(req, "LABEL"), **req.base())


def _parse_maintainer(req: _Request) -> Instruction:
    _exactly_one(req, "MAINTAINER")
    req.flags(NO_FLAGS)
    return Maintainer(maintainer=req.args[0], **req.base())


def _files(req: _Request, keyword: str, flags: Values) -> _Files:
    """parseSourcesAndDest: heredoc markers among the sources become HeredocSources."""
    *sources, dest = req.args
    if _marker(dest) is not None:
        raise req.error(f"{keyword} cannot accept a heredoc as a destination", word=dest)
    bodies = {h.name: h for h in req.node.heredocs}
    paths: list[str] = []
    contents: list[HeredocSource] = []
    for src in sources:
        marker = _marker(src)
        if marker is None:
            paths.append(src)
            continue
        body = bodies.get(marker.name)
        data = body.content if body else ""
        if marker.chomp:
            data = chomp(data)
        contents.append(HeredocSource(name=marker.name, data=data, expand=marker.expand))
    return {"sources": tuple(paths), "dest": dest, "heredoc_sources": tuple(contents), "json_form": req.node.json,
            "chown": flags.text("chown"), "chmod": flags.text("chmod"), "link": flags.flag("link"),
            "exclude": flags.many("exclude")}


def _marker(word: str) -> Marker | None:
    try:
        return parse_marker(word)
    except HeredocError:
        return None


def _transfer_common(req: _Request, keyword: str, declared: tuple[Flag, ...]) -> tuple[Values, _Files]:
    if len(req.args) < 2:
        raise req.error(f"{keyword} requires at least two arguments, but only one was provided. "
                        "Destination could not be determined")
    flags = req.flags(declared)
    return flags, _files(req, keyword, flags)


def _parse_copy(req: _Request) -> Instruction:
    flags, common = _transfer_common(req, "COPY", COPY_FLAGS)
    from_ = flags.text("from")
    if from_ is not None and _VARIABLE.search(from_):
        raise req.error("variable expansion is not supported for --from, define a new stage with FROM "
                        "using ARG from global scope as a workaround", flag="from")
    return Copy(from_=from_, parents=flags.flag("parents"), **common, **req.base())


def _parse_add(req: _Request) -> Instruction:
    flags, common = _transfer_common(req, "ADD", ADD_FLAGS)
    return Add(keep_git_dir=flags.flag("keep-git-dir"), checksum=flags.text("checksum"),
               unpack=flags.optional_flag("unpack"), **common, **req.base())


def _parse_from(req: _Request) -> Instruction:
    args = req.args
    name: str | None = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise req.error(f"invalid name for build stage: {go_quote(args[2])}, name can't start with a number "
                            "or contain symbols", word=args[2],
                            hint="stage names are letters, digits, -, _ and ., starting with a letter")
    elif len(args) != 1:
        raise req.error("FROM requires either one or three arguments", hint="write FROM IMAGE [AS NAME]")
    flags = req.flags(FROM_FLAGS)
    return From(image=args[0], name=name, platform=flags.text("platform"), **req.base())


def _parse_onbuild(req: _Request) -> Instruction:
    _at_least_one(req, "ONBUILD")
    req.flags(NO_FLAGS)
    trigger = trim_space(req.args[0]).upper()
    if trigger == "ONBUILD":
        raise req.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", at_args=True)
    if trigger in ("MAINTAINER", "FROM"):
        raise req.error(f"{trigger} isn't allowed as an ONBUILD trigger", at_args=True)
    node = req.node
    prefix = _ONBUILD_PREFIX.match(node.original)
    expression = node.original[prefix.end() if prefix else 0 :]
    expression += "".join("\n" + h.content + h.name for h in node.heredocs)
    parsed: Instruction | None = None
    if node.child is not None:
        child = dataclasses.replace(node.child, heredocs=node.heredocs)
        try:
            parsed = _instruction(_Request(child, req.file, req.escape))
        except ParseError:
            parsed = None
    return Onbuild(expression=expression, trigger=parsed, **req.base())


def _parse_workdir(req: _Request) -> Instruction:
    _exactly_one(req, "WORKDIR")
    req.flags(NO_FLAGS)
    return Workdir(path=req.args[0], **req.base())


def _each(req: _Request, flags: Values, name: str, parse: Callable[[str], T]) -> tuple[T, ...]:
    """Each value of a repeatable flag parsed, an error pointing at the flag that failed."""
    out: list[T] = []
    for nth, value in enumerate(flags.many(name)):
        try:
            out.append(parse(value))
        except MountError as e:
            raise req.error(str(e), flag=name, nth=nth, hint=e.hint) from None
        except ParseError as e:
            raise req.error(e.reason, flag=name, nth=nth) from None
    return tuple(out)


def _checked_mount(text: str) -> MountSpec:
    spec = MountSpec.parse(text)
    if not spec.uses_variables:  # nothing to wait for: check the fields now
        spec.resolve(lambda value: expand_word(value, {}))
    return spec


def _argv(req: _Request, *, empty_as_none: bool = False) -> tuple[str, ...] | None:
    command = _json_args(req, req.args)
    return None if empty_as_none and not command else command


def _parse_run(req: _Request) -> Instruction:
    flags = req.flags(RUN_FLAGS)
    return Run(
        command=_argv(req),
        prepend_shell=not req.node.json,
        mounts=_each(req, flags, "mount", _checked_mount),
        devices=_each(req, flags, "device", Device.parse),
        network=_each(req, flags, "network", lambda v: check_choice("network", v, NETWORK_MODES))[0],
        security=_each(req, flags, "security", lambda v: check_choice("security", v, SECURITY_MODES))[0],
        heredocs=req.node.heredocs,
        **req.base(),
    )


def _parse_cmd(req: _Request) -> Instruction:
    req.flags(NO_FLAGS)
    return Cmd(command=_argv(req), prepend_shell=not req.node.json, **req.base())


def _parse_entrypoint(req: _Request) -> Instruction:
    req.flags(NO_FLAGS)
    return Entrypoint(command=_argv(req, empty_as_none=True), prepend_shell=not req.node.json, **req.base())


def _interval(req: _Request, flags: Values, name: str) -> int:
    text = flags.text(name)
    if text is None:
        return 0
    try:
        ns = parse_duration(text)
    except ValueError as e:
        raise req.error(str(e), flag=name) from None
    if ns != 0 and ns < MIN_INTERVAL_NS:
        raise req.error(f"Interval {go_quote(name)} cannot be less than {format_duration(MIN_INTERVAL_NS)}",
                        flag=name)
    return ns


def _parse_healthcheck(req: _Request) -> Instruction:
    _at_least_one(req, "HEALTHCHECK")
    kind = req.args[0].upper()
    args = req.args[1:]
    if kind == "NONE":  # BuildKit does not look at the flags then
        if args:
            raise req.error("HEALTHCHECK NONE takes no arguments", at_args=True)
        return Healthcheck(test=("NONE",), **req.base())
    flags = req.flags(HEALTHCHECK_FLAGS)
    if kind != "CMD":
        raise req.error(f"Unknown type {go_quote(kind)} in HEALTHCHECK (try CMD)", at_args=True)
    command = _json_args(req, args)
    if not command:
        raise req.error("Missing command after HEALTHCHECK CMD", at_args=True)
    test = ("CMD" if req.node.json else "CMD-SHELL", *command)
    retries = 0
    if (text := flags.text("retries")) is not None:
        try:
            retries = parse_int(text, 10, 32)
        except ValueError as e:
            raise req.error(str(e), flag="retries") from None
        if retries < 0:
            raise req.error(f"--retries cannot be negative ({retries})", flag="retries")
    return Healthcheck(test=test, interval_ns=_interval(req, flags, "interval"),
                       timeout_ns=_interval(req, flags, "timeout"),
                       start_period_ns=_interval(req, flags, "start-period"),
                       start_interval_ns=_interval(req, flags, "start-interval"), retries=retries, **req.base())


def _parse_expose(req: _Request) -> Instruction:
    _at_least_one(req, "EXPOSE")
    req.flags(NO_FLAGS)
    return Expose(ports=tuple(req.args), **req.base())


def _parse_user(req: _Request) -> Instruction:
    _exactly_one(req, "USER")
    req.flags(NO_FLAGS)
    return User(user=req.args[0], **req.base())


def _parse_volume(req: _Request) -> Instruction:
    _at_least_one(req, "VOLUME")
    req.flags(NO_FLAGS)
    paths = tuple(p.strip() for p in req.args)
    if "" in paths:
        raise req.error("VOLUME specified can not be an empty string", at_args=True)
    return Volume(paths=paths, json_form=req.node.json, **req.base())


def _parse_stopsignal(req: _Request) -> Instruction:
    _exactly_one(req, "STOPSIGNAL")  # BuildKit never parses STOPSIGNAL's flags
    signal = req.args[0]
    if "$" not in signal:
        try:
            parse_signal(expand_word(signal, {}))
        except (ValueError, ParseError) as e:
            raise req.error(str(e.reason if isinstance(e, ParseError) else e), at_args=True,
                            hint="use a signal name (SIGTERM, TERM) or a positive number") from None
    return Stopsignal(signal=signal, **req.base())


def _parse_arg(req: _Request) -> Instruction:
    _at_least_one(req, "ARG")  # BuildKit never parses ARG's flags
    defs = []
    for word in req.args:
        name, eq, default = word.partition("=")
        if eq and not name:
            raise req.error("ARG names can not be blank", word=word)
        defs.append(ArgDef(name=name, default=default if eq else None))
    return Arg(args=tuple(defs), **req.base())


def _parse_shell(req: _Request) -> Instruction:
    req.flags(NO_FLAGS)
    shell = _json_args(req, req.args)
    if not shell:
        raise req.error("SHELL requires at least one argument")
    if not req.node.json:
        raise req.error("SHELL requires the arguments to be in JSON form", at_args=True,
                        hint='write SHELL ["/bin/sh", "-c"]')
    return Shell(shell=shell, **req.base())


_PARSERS: dict[str, Callable[[_Request], Instruction]] = {
    "env": _parse_env,
    "maintainer": _parse_maintainer,
    "label": _parse_label,
    "add": _parse_add,
    "copy": _parse_copy,
    "from": _parse_from,
    "onbuild": _parse_onbuild,
    "workdir": _parse_workdir,
    "run": _parse_run,
    "cmd": _parse_cmd,
    "healthcheck": _parse_healthcheck,
    "entrypoint": _parse_entrypoint,
    "expose": _parse_expose,
    "user": _parse_user,
    "volume": _parse_volume,
    "stopsignal": _parse_stopsignal,
    "arg": _parse_arg,
    "shell": _parse_shell,
}


def _instruction(req: _Request) -> Instruction:
    parse = _PARSERS.get(req.node.command)
    if parse is None:
        match = suggest(req.node.keyword, list(INSTRUCTION_CLASSES))
        raise req.error(f"unknown instruction: {req.node.keyword}",
                        hint=f"did you mean {match}?" if match else "see the Buildfile section of the README")
    inst = parse(req)
    bad = syntax_error(inst, req.escape)
    if bad is not None:
        word, message = bad
        hint = "close the quote" if "matching" in message and "quote" in message else None
        raise req.error(f"failed to process {go_quote(word)}: {message}", word=word.split("\n", 1)[0], hint=hint)
    return inst


def parse_instruction(node: Node, file: str = "Buildfile", escape: str = "\\") -> Instruction:
    """One node as a typed instruction; raises ParseError (or ParseErrors for several bad flags).
    `escape` is the file's escape character (`# escape=`)."""
    return _instruction(_Request(node, file, escape))


def typed_nodes(tree: NodeTree, errors: list[ParseError]) -> Iterator[tuple[Node, Instruction]]:
    """Each node of `tree` that parses, with its typed instruction, in order; every error of the
    nodes that do not is appended to `errors`, so that all of them can be reported together."""
    for node in tree.nodes:
        try:
            inst = parse_instruction(node, tree.file, tree.escape)
        except ParseErrors as e:
            errors.extend(e.errors)
            continue
        except ParseError as e:
            errors.append(e)
            continue
        yield node, inst


def to_buildfile(tree: NodeTree) -> Buildfile:
    """Typed instructions grouped into stages; raises ParseErrors listing every error found
    (an ARG-only file too: BuildKit's build fails with "no stages to build")."""
    errors: list[ParseError] = []
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for node, inst in typed_nodes(tree, errors):
        if isinstance(inst, From):
            stages.append((inst, []))
        elif stages:
            stages[-1][1].append(inst)
        elif isinstance(inst, Arg):
            global_args.append(inst)
        else:
            errors.append(ParseError("no build stage in current context", file=tree.file, line=node.start_line,
                                     column=node.column,
                                     hint="only ARG may come before the first FROM"))
    if not stages and not errors and tree.nodes:
        node = tree.nodes[-1]
        errors.append(ParseError("dockerfile contains no stages to build", file=tree.file, line=node.start_line,
                                 column=node.column, hint="add a FROM instruction"))
    if errors:
        raise ParseErrors(errors)
    return Buildfile(
        file=tree.file,
        stages=tuple(Stage(index=i, from_=f, instructions=tuple(insts)) for i, (f, insts) in enumerate(stages)),
        global_args=tuple(global_args),
        directives=tree.directives,
        warnings=tree.warnings,
        nodes=tree,
    )
