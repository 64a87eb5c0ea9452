"""Golden cases as data: tests/parser/cases/<name>/ holds a `Buildfile` and what parsing it gives.

- `expected.dump`: the node level's BuildKit dump (compared byte for byte);
- `expected.json`: `to_json` of the parse (the typed level's when it succeeds, which adds the lint
  warnings; the node level's when `expected.errors` says it fails);
- `expected.errors`: the typed parse fails with exactly these error lines (`FILE:LINE:COL: message`,
  the file being named `Buildfile`); without it the typed parse must succeed;
- `expected.warnings`: `LINE Rule` per warning the typed parse gives (in any order).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import parser
from pybuild.errors import ParseErrors

CASES = Path(__file__).with_name("cases")


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "Buildfile").is_file())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_case(case: Path) -> None:
    source = (case / "Buildfile").read_bytes()
    expected_errors = case / "expected.errors"
    if expected_errors.exists():
        with pytest.raises(ParseErrors) as info:
            parser.parse_buildfile(source, "Buildfile")
        assert list(info.value.lines()) == expected_errors.read_text(encoding="utf-8").splitlines()
        result: object = None
    else:
        result = parser.parse_buildfile(source, "Buildfile")

    dump_file = case / "expected.dump"
    if dump_file.exists():
        assert parser.dump(parser.parse_nodes(source)) == dump_file.read_text(encoding="utf-8")

    json_file = case / "expected.json"
    if json_file.exists():
        printed = parser.to_json(result if result is not None else parser.parse_nodes(source))  # type: ignore[arg-type]
        assert json.loads(printed) == json.loads(json_file.read_text(encoding="utf-8"))

    warnings_file = case / "expected.warnings"
    if warnings_file.exists():
        assert isinstance(result, parser.Buildfile)
        got = sorted(f"{w.line} {w.rule}" for w in result.warnings)
        assert got == sorted(warnings_file.read_text(encoding="utf-8").splitlines())
    elif isinstance(result, parser.Buildfile) and not json_file.exists():
        assert result.warnings == (), "unexpected warnings: add expected.warnings"


def test_every_case_checks_something() -> None:
    for case in _cases():
        assert any((case / f).exists() for f in ("expected.dump", "expected.json", "expected.errors")), case.name
