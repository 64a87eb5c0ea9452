"""Buildfile (Dockerfile syntax) text to a typed AST that means what BuildKit makes of it.

Public entry points (see the "parser" section of docs/TEAM.md):

- `parse_buildfile(text, file="Buildfile") -> Buildfile`: stages of typed instructions, the
  global ARGs, directives and warnings; raises `ParseErrors` listing every error found.
- `parse_nodes(text, file="Buildfile") -> NodeTree`: the node level only (BuildKit's parser).
- `parse_instructions(text, file) -> tuple[Instruction, ...]`: typed instructions without stage
  rules, for ONBUILD triggers read back from an image.
- `dump(parsed) -> str` (BuildKit's parse dump) and `to_json(parsed) -> str`.
- `parser.shell.expand_word` / `expand_words` / `expand_heredoc`: variable expansion.

Pure: no I/O beyond the text given, no printing.
"""

from __future__ import annotations

import dataclasses

from parser.instructions import (
    Add,
    Arg,
    ArgDef,
    Buildfile,
    Cmd,
    CommandLine,
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
    SourcesAndDest,
    Stage,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from parser.lint import apply_check, lint
from parser.mounts import Device, Mount, MountError, MountSpec
from parser.nodes import CheckConfig, Directives, Heredoc, Node, NodeTree, ParseWarning
from parser.output import dump, to_json
from parser.scanner import no_gc, parse_nodes, scan
from parser.signals import parse_signal
from parser.typed import parse_instruction, to_buildfile, typed_nodes
from pybuild.errors import ParseError, ParseErrors


def _by_position(errors: list[ParseError]) -> list[ParseError]:
    return sorted(errors, key=lambda e: (e.line, e.column))


def parse_buildfile(text: str | bytes, file: str = "Buildfile") -> Buildfile:
    """Parse a whole Buildfile. Raises ParseErrors (every error found, in line order)."""
    tree, errors = scan(text, file)
    return typed_buildfile(tree, errors)


def typed_buildfile(tree: NodeTree, errors: list[ParseError] | None = None) -> Buildfile:
    """The typed level of an already scanned node tree (`errors`: the scan's own errors, to be
    reported together with the typed level's)."""
    errors = list(errors or ())
    with no_gc():
        try:
            buildfile = to_buildfile(tree)
        except ParseErrors as e:
            raise ParseErrors(_by_position(errors + e.errors)) from None
        if errors:
            raise ParseErrors(_by_position(errors))
        warnings = apply_check(tree.warnings + lint(buildfile), tree.directives.check_config)
        return dataclasses.replace(buildfile, warnings=warnings)


def parse_instructions(text: str | bytes, file: str = "Buildfile") -> tuple[Instruction, ...]:
    """Typed instructions in order, with no stage rules (any instruction may come first)."""
    tree, errors = scan(text, file)
    out = tuple(inst for _, inst in typed_nodes(tree, errors))
    if errors:
        raise ParseErrors(_by_position(errors))
    return out


__all__ = [
    "Add", "Arg", "ArgDef", "Buildfile", "CheckConfig", "Cmd", "CommandLine", "Copy", "Device", "Directives",
    "Entrypoint", "Env", "Expose", "From", "Healthcheck", "Heredoc", "HeredocSource", "Instruction", "KeyValue",
    "Label", "Location", "Maintainer", "Mount", "MountError", "MountSpec", "Node", "NodeTree", "Onbuild",
    "ParseWarning", "Run", "Shell", "SourcesAndDest", "Stage", "Stopsignal", "User", "Volume", "Workdir", "dump",
    "parse_buildfile", "parse_instruction", "parse_instructions", "parse_nodes", "parse_signal", "scan", "to_json",
    "typed_buildfile",
]
