"""Exec-form detection: BuildKit's `parseJSON`, with Go's encoding/json deciding what is JSON.

The arguments are exec form when, left-trimmed, they start with `[` and are a valid JSON text; a
valid JSON array holding anything but strings is an error; anything else that is not valid JSON
(single quotes, a trailing comma) is silently shell form. Python's json module agrees with Go's on
validity except in three places, handled here: Go rejects NaN/Infinity, rejects numbers that
overflow a float64, and accepts nesting down to 10000 levels (Python's json recurses and gives up
far earlier; such texts are checked with the grammar's LALR `json_text` rule instead). Go also turns
an unpaired `\\uD800` escape into U+FFFD.
"""

from __future__ import annotations

import json
import math
import re

from parser.gotext import trim_left_space

MAX_DEPTH = 10000  # encoding/json's maxNestingDepth
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.S)


class NotStringArray(ValueError):
    """A valid JSON array with an element that is not a string."""

    def __init__(self) -> None:
        super().__init__("when using JSON array syntax, arrays must be comprised of strings only")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> object:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} overflows a float64")
    return value


def _depth(text: str) -> int:
    depth = deepest = 0
    for m in _STRUCTURE.finditer(text):
        tok = m.group()
        if tok in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif tok in ("]", "}"):
            depth -= 1
    return deepest


def _valid_deep_json(text: str) -> bool:
    if _depth(text) > MAX_DEPTH:
        return False
    from lark.exceptions import LarkError

    from parser.grammar import buildfile_grammar

    try:
        buildfile_grammar().parse(text, start="json_text")
    except LarkError:
        return False
    return True


def parse_json_array(rest: str) -> list[str] | None:
    """The strings of an exec-form argument text, or None when it is shell form.

    Raises NotStringArray for a valid JSON array holding a non-string."""
    text = trim_left_space(rest)
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite, parse_int=_finite)
    except RecursionError:
        if _valid_deep_json(text):
            raise NotStringArray() from None  # deep nesting means a non-string element
        return None
    except ValueError:
        return None
    if any(not isinstance(item, str) for item in value):
        raise NotStringArray()
    return [_LONE_SURROGATE.sub("\ufffd", item) if _LONE_SURROGATE.search(item) else item for item in value]
