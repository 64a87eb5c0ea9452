"""`--format` templates: the Go text/template subset docker users write, printed as Go prints
values; everything else refused with one error line naming the column; and the four commands that
take one (images, ps, history, inspect) as their docker counterparts answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.errors import ParseError
from pybuild.templates import parse_format, render_rows
from tests.conftest import Pybuild

DOC = {
    "Id": "sha256:abc",
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}, "Cmd": None},
    "State": {"Pid": 42, "Running": True, "Ratio": 1.5},
}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Id}}", "sha256:abc"),
    ("id={{ .Id }}!", "id=sha256:abc!"),
    ("{{.State.Pid}} {{.State.Running}} {{.State.Ratio}}", "42 true 1.5"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),  # Go prints maps sorted by key
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Cmd}}", "<nil>"),
    ("{{.Config.Missing}}", "<no value>"),
    ("{{.Missing.Deeper}}", "<no value>"),
    ("{{json .Config.Env}}", '["A=1","B=2"]'),
    ("{{.Config.Env | json}}", '["A=1","B=2"]'),
    ("{{json .Config.Missing}}", "null"),
    ('{{join .Config.Env ", "}}', "A=1, B=2"),
    ('{{index .Config.Labels "a"}}{{index .Config.Labels "zz"}}', "1"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{len .Config.Env}}", "2"),
    ("{{upper .Id}} {{lower `ABC`}} {{title \"hello world\"}}", "SHA256:ABC abc Hello World"),
    ('{{split "a:b:c" ":"}}', "[a b c]"),
    ('{{pad "x" 1 2}}|{{truncate .Id 6}}', " x  |sha256"),
    ('{{printf "%s has %d (%q) %%" .Id .State.Pid "q"}}', 'sha256:abc has 42 ("q") %'),
    ('{{print "a" "b"}} {{print 1 2}} {{println .Id}}', "ab 1 2 sha256:abc\n"),
    ("{{.Id -}}   \n  x {{- .Id}}", "sha256:abcxsha256:abc"),
    ("a\\tb\\nc", "a\tb\nc"),
    ("{{json .}}", '{"Id":"sha256:abc","Config":{"Env":["A=1","B=2"],"Labels":{"b":"2","a":"1"},"Cmd":null},'
                   '"State":{"Pid":42,"Running":true,"Ratio":1.5}}'),
])
def test_templates_render_as_go_prints(template: str, expected: str) -> None:
    assert parse_format(template).render(DOC) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{if .Id}}x{{end}}", "--format:1:3: 'if' is not supported in --format"),
    ("{{range .Config.Env}}{{.}}{{end}}", "--format:1:3: 'range' is not supported"),
    ("{{$x := .Id}}", "--format:1:3: unexpected '$x := .Id'"),
    ("{{(.Id)}}", "--format:1:3: unexpected '(.Id)'"),
    ("{{nosuch .Id}}", "--format:1:3: function 'nosuch' not defined"),
    ("{{.Id .State}}", "--format:1:7: can't give argument to non-function"),
    ("{{.Id | .State}}", "--format:1:9: can't give argument to non-function"),
    ("ok {{.Id", "--format:1:4: unclosed action"),
    ("{{}}", "--format:1:3: empty action"),
    ("{{.Id | }}", "--format:1:3: missing value for command"),
    ("{{len .Id .Id}}", "--format:1:3: error calling len"),
])
def test_what_is_not_supported_is_one_error_naming_the_column(template: str, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_format(template).render(DOC)
    assert e.value.message.startswith(message), e.value.message


def test_rows_know_their_fields_and_table_makes_a_header_and_columns() -> None:
    headers = {"ID": "CONTAINER ID", "Names": "NAMES"}
    rows = [{"ID": "abc123", "Names": "web"}, {"ID": "def4567890ab", "Names": "db"}]
    assert render_rows(parse_format("{{.ID}} {{.Names}}"), rows, headers) == "abc123 web\ndef4567890ab db"
    assert render_rows(parse_format("table {{.ID}}\\t{{.Names}}"), rows, headers).splitlines() == [
        "CONTAINER ID   NAMES",
        "abc123         web",
        "def4567890ab   db",
    ]
    assert render_rows(parse_format("table {{.Names}}"), [], headers) == "NAMES"
    tabbed = render_rows(parse_format("table {{.ID}}"), [{"ID": "a\tb", "Names": ""}], headers).splitlines()
    assert tabbed == ["CONTAINER ID", "a              b"]
    with pytest.raises(ParseError, match=r"can't evaluate field Nope \(fields: ID, Names\)"):
        render_rows(parse_format("{{.Nope}}"), rows, headers)


@pytest.mark.root
def test_the_commands_take_a_format(busybox_store: Path, pb: Pybuild) -> None:
    pb("tag", "busybox", "other:2")
    assert pb("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == ["busybox:latest", "other:2"]
    table = pb("images", "--format", "table {{.Repository}}\\t{{.Tag}}").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG"] and len(table) == 3
    image_id = pb("inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    short = pb("images", "-q").stdout.split()[0]
    assert pb("images", "--format", "{{.ID}}").stdout.split()[0] == short == image_id[7:19]
    assert pb("inspect", "--format", "{{json .Config.Cmd}} {{.Os}}", "busybox").stdout == '["sh"] linux\n'
    created_by = pb("history", "--format", "{{.CreatedBy}}", "busybox").stdout.splitlines()
    assert len(created_by) >= 1 and all(created_by)
    pb("run", "-d", "--name", "fmt-test", "busybox", "sleep", "60")
    try:
        assert pb("ps", "--format", "{{.Names}} {{.State}} {{.Image}}").stdout == "fmt-test running busybox\n"
        pid = int(pb("inspect", "-f", "{{.State.Pid}}", "fmt-test").stdout)
        assert Path(f"/proc/{pid}").exists()
        bad = pb("ps", "--format", "{{.Nope}}", check=False)
        assert bad.returncode == 1 and bad.stderr.startswith("error: --format:1:3: can't evaluate field Nope")
        assert "Traceback" not in bad.stderr
    finally:
        pb("rm", "-f", "fmt-test")
