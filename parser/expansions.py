"""Which instruction values the builder expands, and an early syntax check of them.

BuildKit expands these values only when it builds (F30 of the feature reference), so an
unterminated quote in `ENV A="x` or a `${` without `}` in `COPY ${src /dst` only fails then.
`pybuild parse` reports them at parse time: each value is lexed with unset variables left as
written, which finds every syntax error and no error that depends on a variable's value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from parser.instructions import (
    Add,
    Arg,
    Copy,
    Env,
    Expose,
    From,
    Instruction,
    Label,
    Run,
    SourcesAndDest,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from parser.shell import LexError, lex


def expanded_words(inst: Instruction) -> Iterator[str]:
    """The values of `inst` that the builder passes through `expand_word`/`expand_words`."""
    if isinstance(inst, From):
        yield inst.image
        if inst.platform is not None:
            yield inst.platform
    elif isinstance(inst, Arg):
        for d in inst.args:
            yield d.name
            if d.default is not None:
                yield d.default
    elif isinstance(inst, (Env, Label)):
        for pair in inst.pairs:
            yield pair.key
            yield pair.value
    elif isinstance(inst, SourcesAndDest):
        yield from inst.sources
        yield inst.dest
        yield from (v for v in (inst.chown, inst.chmod) if v is not None)
        yield from inst.exclude
        if isinstance(inst, Add) and inst.checksum is not None:
            yield inst.checksum
    elif isinstance(inst, Workdir):
        yield inst.path
    elif isinstance(inst, User):
        yield inst.user
    elif isinstance(inst, Volume):
        yield from inst.paths
    elif isinstance(inst, Expose):
        yield from inst.ports
    elif isinstance(inst, Stopsignal):
        yield inst.signal
    elif isinstance(inst, Run):
        for spec in inst.mounts:
            yield from (v for _, v in spec.fields if v is not None)


_CAN_FAIL = re.compile(r"[$'\"]")  # without these a value always lexes


def syntax_error(inst: Instruction, escape: str) -> tuple[str, str] | None:
    """(the word, the lexer's message) for the first expanded value that cannot be lexed."""
    for word in expanded_words(inst):
        if not _CAN_FAIL.search(word):
            continue
        try:
            lex(word, {}, escape, skip_unset=True)
        except LexError as e:
            return word, str(e)
    if isinstance(inst, (Copy, Add)):
        for source in inst.heredoc_sources:
            if source.expand:
                try:
                    lex(source.data, {}, "\\", skip_unset=True, skip_quotes=True)
                except LexError as e:
                    return source.data, str(e)
    return None
