"""BuildKit's own parser test files and Charliecloud's Dockerfiles: our dump must be BuildKit's,
byte for byte (data read from ../shared/conformance, never copied into the project)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import parser
from parser.output import dump_node
from pybuild.errors import ParseErrors
from tests.conftest import CONFORMANCE

TESTFILES = CONFORMANCE / "buildkit-parser"
NEGATIVE = CONFORMANCE / "buildkit-parser-negative"
HEREDOC = CONFORMANCE / "buildkit-heredoc" / "extract-heredoc"
CHARLIECLOUD = CONFORMANCE / "charliecloud-dockerfiles"


def _dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _absent(root: Path) -> list[object]:
    return [pytest.param(None, marks=pytest.mark.skip(reason=f"{root} is absent"))]


@pytest.mark.parametrize("case", _dirs(TESTFILES) or _absent(TESTFILES), ids=lambda p: getattr(p, "name", "absent"))
def test_buildkit_testfile_dump_is_byte_for_byte(case: Path) -> None:
    tree = parser.parse_nodes((case / "Dockerfile").read_bytes())
    assert parser.dump(tree) == (case / "result").read_text(encoding="utf-8")


def test_all_33_buildkit_testfiles_are_present() -> None:
    if not TESTFILES.is_dir():
        pytest.skip(f"{TESTFILES} is absent")
    assert len(_dirs(TESTFILES)) == 33


@pytest.mark.parametrize("case", _dirs(NEGATIVE) or _absent(NEGATIVE), ids=lambda p: getattr(p, "name", "absent"))
def test_buildkit_negative_testfile_fails(case: Path) -> None:
    with pytest.raises(ParseErrors):
        parser.parse_nodes((case / "Dockerfile").read_bytes())


def test_heredoc_extraction_matches_buildkit() -> None:
    if not HEREDOC.is_dir():
        pytest.skip(f"{HEREDOC} is absent")
    expected = json.loads((HEREDOC / "expected.json").read_text(encoding="utf-8"))
    tree = parser.parse_nodes((HEREDOC / "Dockerfile").read_bytes())
    assert tree.escape == expected["escape_token"]
    got = []
    for node in tree.nodes:
        item: dict[str, object] = {"line": node.start_line, "end_line": node.end_line, "dump": dump_node(node)}
        if node.heredocs:
            item["heredocs"] = [
                {"name": h.name, "fd": h.fd, "expand": h.expand, "chomp": h.chomp, "content": h.content}
                for h in node.heredocs
            ]
        got.append(item)
    assert got == expected["instructions"]


def _charliecloud() -> list[Path]:
    if not CHARLIECLOUD.is_dir():
        return []
    return sorted(p for p in CHARLIECLOUD.iterdir() if p.is_file() and p.name != "README.md"
                  and not p.name.endswith("expected.txt"))


@pytest.mark.parametrize("path", _charliecloud() or _absent(CHARLIECLOUD), ids=lambda p: getattr(p, "name", "absent"))
def test_charliecloud_dockerfile_dump_matches_buildkit(path: Path) -> None:
    expected = CHARLIECLOUD / "_buildkit_parse" / f"{path.name}.result"
    assert parser.dump(parser.parse_nodes(path.read_bytes())) == expected.read_text(encoding="utf-8")


def test_all_41_charliecloud_dockerfiles_are_checked() -> None:
    if not CHARLIECLOUD.is_dir():
        pytest.skip(f"{CHARLIECLOUD} is absent")
    assert len(_charliecloud()) == 41


@pytest.mark.parametrize("path", _charliecloud() or _absent(CHARLIECLOUD), ids=lambda p: getattr(p, "name", "absent"))
def test_charliecloud_dockerfile_typed_level(path: Path) -> None:
    """Every file also parses at the typed level, except Charliecloud's own RSYNC instruction,
    which BuildKit rejects there too."""
    text = path.read_bytes()
    if b"\nRSYNC" in text:
        with pytest.raises(ParseErrors, match="unknown instruction: RSYNC"):
            parser.parse_buildfile(text)
    else:
        assert parser.parse_buildfile(text).stages
