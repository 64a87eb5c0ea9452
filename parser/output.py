"""The two printed forms of a parse: BuildKit's dump and our JSON.

`dump()` is byte for byte what BuildKit's `Node.Dump()` prints for the same file (one
`(keyword ["flags"] "arg" ...)` line per instruction; ../shared/reference/parse-dump.md), so a
Buildfile's parse can be diffed against BuildKit's. `to_json()` is the node level with everything
the dump leaves out: line ranges, heredoc bodies, whether the arguments were JSON, warnings.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from parser.gotext import go_lower, go_quote, quote_slice
from parser.nodes import Node, NodeTree, ParseWarning


class HasNodes(Protocol):
    @property
    def nodes(self) -> NodeTree: ...

    @property
    def warnings(self) -> tuple[ParseWarning, ...]: ...


def _tree(parsed: NodeTree | HasNodes) -> NodeTree:
    return parsed if isinstance(parsed, NodeTree) else parsed.nodes


def dump_node(node: Node) -> str:
    """One instruction as BuildKit dumps it, without the outer parentheses."""
    parts = [go_lower(node.keyword)]
    if node.flags:
        parts.append(quote_slice(node.flags))
    parts.extend(go_quote(arg) for arg in node.args)
    if node.child is not None:
        parts.append("(" + dump_node(node.child) + ")")
    return " ".join(parts)


def dump(parsed: NodeTree | HasNodes) -> str:
    """The whole parse dump, one line per instruction, each ending in a newline."""
    return "".join(f"({dump_node(node)})\n" for node in _tree(parsed).nodes)


def _node_json(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {
        "line": node.start_line,
        "end_line": node.end_line,
        "keyword": node.keyword,
        "flags": list(node.flags),
        "args": list(node.args),
        "json": node.json,
        "heredocs": [
            {"name": h.name, "fd": h.fd, "expand": h.expand, "chomp": h.chomp, "content": h.content}
            for h in node.heredocs
        ],
    }
    if node.child is not None:
        # BuildKit's nodeArgs: the trigger's keyword, then its words
        out["args"] = [node.child.keyword, *node.child.args]
        out["trigger"] = _node_json(node.child)
    return out


def to_json_value(parsed: NodeTree | HasNodes) -> dict[str, Any]:
    """The node level as a JSON value; the warnings are the parsed object's own (a Buildfile's
    include the lint warnings)."""
    tree = _tree(parsed)
    d = tree.directives
    return {
        "escape_token": d.escape,
        "directives": {"escape": d.escape, "syntax": d.syntax, "check": d.check},
        "warnings": [w.to_dict() for w in parsed.warnings],
        "instructions": [_node_json(node) for node in tree.nodes],
    }


def to_json(parsed: NodeTree | HasNodes) -> str:
    """The node level as JSON text (UTF-8, indented, ending in a newline)."""
    return json.dumps(to_json_value(parsed), ensure_ascii=False, indent=2) + "\n"
