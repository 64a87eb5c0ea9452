"""Helpers the builder tests share: small trees from dicts, ignore matchers from lines."""

from __future__ import annotations

from pathlib import Path

from builder.ignore import PatternMatcher, parse_ignore_file


def make_tree(root: Path, spec: dict[str, str | None]) -> None:
    """Files from a dict: `name -> content`; a name ending in `/` is a directory, a value
    starting with `->` a symlink."""
    for name, content in spec.items():
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is not None and content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content or "")


def ignoring(*patterns: str) -> PatternMatcher:
    return PatternMatcher(parse_ignore_file("\n".join(patterns)), file=".dockerignore")
