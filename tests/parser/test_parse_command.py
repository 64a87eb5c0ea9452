"""`pybuild parse` through the real CLI (a subprocess per case)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import Pybuild

ERROR_LINE = re.compile(r"error: [^\s:]+(?::\d+){2}: \S")


def _write(tmp_path: Path, text: str | bytes, name: str = "Buildfile") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_dump_of_a_good_file(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, 'FROM alpine AS base\nCOPY --chown=1:1 -- a /b/\nCMD ["a", "b"]\n')
    proc = pb("parse", "-f", path)
    assert proc.stdout == '(from "alpine" "AS" "base")\n(copy ["--chown=1:1"] "a" "/b/")\n(cmd "a" "b")\n'
    assert proc.stderr == ""


def test_json_format(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, "FROM alpine\nRUN <<EOF\necho hi\nEOF\nCMD echo shell\n")
    out = json.loads(pb("parse", "--format", "json", "-f", path).stdout)
    assert out["escape_token"] == "\\"
    assert [w["rule"] for w in out["warnings"]] == ["JSONArgsRecommended"]
    run = out["instructions"][1]
    assert (run["line"], run["end_line"], run["keyword"], run["flags"], run["args"]) == (2, 4, "RUN", [], ["<<EOF"])
    assert run["heredocs"] == [{"name": "EOF", "fd": 0, "expand": True, "chomp": False, "content": "echo hi\n"}]


def test_errors_are_one_line_each_with_file_line_column(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, "FROM alpine\nRUNN x\nCOPY --chwon=1 a b\nENV A=\"open\nFROM x AS 1bad\n")
    proc = pb("parse", "-f", path, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4
    assert all(ERROR_LINE.match(line) for line in errors), errors
    assert errors[0] == f"error: {path}:2:1: unknown instruction: RUNN"
    assert "hint: did you mean RUN?" in proc.stderr
    assert errors[1] == f"error: {path}:3:6: unknown flag: --chwon"
    # the node level parsed, so its dump is still printed (to diff against BuildKit's)
    assert proc.stdout.splitlines()[1] == '(runn "")'


def test_node_level_errors_print_no_dump(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, "FROM alpine\nRUN <<EOF\nno end\n")
    proc = pb("parse", "-f", path, check=False)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"error: {path}:2:1: unterminated heredoc\n")


def test_bad_bytes(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, b"FROM alpine\nRUN \xff\x00\n")
    proc = pb("parse", "-f", path, check=False)
    assert proc.returncode == 1
    assert f"error: {path}:2:5: invalid UTF-8 (byte 0xff)" in proc.stderr
    assert f"error: {path}:2:6: NUL byte in Buildfile" in proc.stderr


def test_stdin(pb: Pybuild) -> None:
    assert pb("parse", "-f", "-", input="FROM a\n").stdout == '(from "a")\n'
    proc = pb("parse", "-f", "-", input="# just a comment\n", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: <stdin>:1:1: file with no instructions")


def test_default_file_is_buildfile_then_dockerfile(pb: Pybuild, tmp_path: Path) -> None:
    _write(tmp_path, "FROM from-dockerfile\n", "Dockerfile")
    assert pb("parse", cwd=tmp_path).stdout == '(from "from-dockerfile")\n'
    _write(tmp_path, "FROM from-buildfile\n", "Buildfile")
    assert pb("parse", cwd=tmp_path).stdout == '(from "from-buildfile")\n'


def test_missing_file(pb: Pybuild, tmp_path: Path) -> None:
    proc = pb("parse", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: no Buildfile in {tmp_path} (looked for Buildfile, Dockerfile, dockerfile)")
    proc = pb("parse", "-f", tmp_path / "nope", check=False)
    assert (proc.returncode, proc.stderr.splitlines()[0]) == (1, f"error: {tmp_path / 'nope'}: no such file")
    proc = pb("parse", "-f", tmp_path, check=False)
    assert proc.returncode == 1 and "is a directory" in proc.stderr


def test_warnings_go_to_stderr(pb: Pybuild, tmp_path: Path) -> None:
    path = _write(tmp_path, "FROM alpine\nMAINTAINER me\n")
    proc = pb("parse", "-f", path)
    assert proc.stderr == (f"warning: {path}:2: Maintainer instruction is deprecated in favor of using label "
                           "(MaintainerDeprecated)\n")


def test_big_input_neither_hangs_nor_fails(pb: Pybuild, tmp_path: Path) -> None:
    body = "RUN echo " + "0123456789" * 6 + " \\\n"
    path = _write(tmp_path, "FROM scratch\n" + body * 100_000 + "  done\n")
    assert path.stat().st_size > 7_000_000
    proc = pb("parse", "-f", path, timeout=120)
    assert proc.stdout.startswith('(from "scratch")\n(run "echo 0123456789')


def test_parse_help(pb: Pybuild) -> None:
    assert "Parse a Buildfile" in pb("parse", "--help").stdout
