""".dockerignore reading and matching, checked against moby/patternmatcher's own tests
(patternmatcher_test.go, ignorefile_test.go) and BuildKit's dockerignore behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.ignore import (
    IgnoreLine,
    MatchInfo,
    PatternMatcher,
    find_ignore_file,
    load_ignore,
    parse_ignore_file,
)
from pybuild.errors import ParseError

EXACT, INEXACT, FAIL = "exact", "inexact", "fail"

# patternmatcher_test.go TestMatches: (pattern, path, result). EXACT: matches the path itself;
# INEXACT: only through a parent directory; FAIL: not at all.
MATCH_TABLE = [
    ("**", "file", EXACT),
    ("**", "file/", EXACT),
    ("**/", "file", EXACT),
    ("**/", "file/", EXACT),
    ("**", "/", EXACT),
    ("**/", "/", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT),
    ("**/**", "dir/file", EXACT),
    ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        EXACT,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
]

MULTI_TABLE = [
    (["**", "!util/docker/web"], "util/docker/web/foo", FAIL),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", EXACT),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        FAIL,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
    # the small tests at the top of patternmatcher_test.go
    (["*"], "fileutils.go", EXACT),
    (["*.go"], "fileutils.go", EXACT),
    (["!fileutils.go", "*.go"], "fileutils.go", EXACT),
    (["docs", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/*", "!docs/README.md"], "docs/README.md", FAIL),
    (["*.go", "!fileutils.go"], "fileutils.go", FAIL),
    ([], "any/path/there", FAIL),
    # the reference: BuildKit's testDockerignore (`ba*`, `!bay`) and last match wins
    (["ba*", "!bay"], "bay", FAIL),
    (["ba*", "!bay"], "bar", EXACT),
    (["*", "!keep", "keep"], "keep", EXACT),
]


def _walk_parent_results(pm: PatternMatcher, path: str) -> tuple[bool, MatchInfo]:
    """What a walker does: match each parent directory in turn, then the path with its info."""
    info = MatchInfo()
    parts = path.split("/")[:-1]  # filepath.Dir: `a/b/` has parents `a` and `a/b`
    for i in range(len(parts)):
        _, info = pm.matches_with_parent("/".join(parts[: i + 1]), info)
    return pm.matches_with_parent(path, info)


@pytest.mark.parametrize(("pattern", "path", "result"), MATCH_TABLE)
def test_single_pattern_matches_like_patternmatcher(pattern: str, path: str, result: str) -> None:
    pm = PatternMatcher([pattern])
    assert pm.matches_exact(path) is (result == EXACT)
    assert pm.matches(path) is (result != FAIL)
    assert pm.matches_with_parent(path)[0] is (result != FAIL)
    assert _walk_parent_results(pm, path)[0] is (result != FAIL)


@pytest.mark.parametrize(("patterns", "path", "result"), MULTI_TABLE)
def test_pattern_lists_apply_in_order_last_match_wins(patterns: list[str], path: str, result: str) -> None:
    pm = PatternMatcher(patterns)
    assert pm.matches(path) is (result != FAIL)
    assert pm.matches_with_parent(path)[0] is (result != FAIL)
    assert _walk_parent_results(pm, path)[0] is (result != FAIL)


@pytest.mark.parametrize(
    ("patterns", "excluded", "kept"),
    [
        # a pattern matches everything below a directory it matches
        (["dir"], ["dir", "dir/x", "dir/x/y"], ["dirx", "other/dir"]),
        # no implicit **/ as in .gitignore
        (["*.log"], ["a.log"], ["sub/a.log"]),
        (["**/*.log"], ["a.log", "sub/a.log", "a/b/c.log"], ["a.txt"]),
        # a leading / in the pattern is the context root
        (["/secret"], ["secret", "secret/key"], ["a/secret"]),
        # an exception re-includes a file inside an excluded directory
        (["docs", "!docs/keep.md"], ["docs", "docs/other.md"], ["docs/keep.md"]),
        # the exception itself can be overridden again later
        (["*.md", "!README.md", "README*"], ["README.md", "x.md"], ["LICENSE"]),
    ],
)
def test_dockerignore_semantics(patterns: list[str], excluded: list[str], kept: list[str]) -> None:
    pm = PatternMatcher(parse_ignore_file("\n".join(patterns)))
    for path in excluded:
        assert pm.matches(path), path
    for path in kept:
        assert not pm.matches(path), path


def test_dot_is_never_excluded() -> None:
    assert not PatternMatcher(["*.go", "**"]).matches(".")


def test_read_ignore_file_like_moby_readall() -> None:
    text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n"
    assert [line.pattern for line in parse_ignore_file(text)] == [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
    ]


def test_read_ignore_file_trims_cleans_and_keeps_line_numbers() -> None:
    text = "\ufeff  a//b/../c/  \r\n#comment\r\n   # not a comment\n\t!  ./keep \n/\n"
    assert parse_ignore_file(text) == [
        IgnoreLine("a/c", 1),
        IgnoreLine("# not a comment", 3),
        IgnoreLine("!keep", 4),
        IgnoreLine("/", 5),
    ]


@pytest.mark.parametrize("line", ["!", "! ", "  !\t"])
def test_lone_exclamation_mark_is_an_error_naming_file_and_line(line: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_ignore_file(f"ok\n\n{line}\n", file="ctx/.dockerignore")
    assert err.value.message == 'ctx/.dockerignore:3: illegal exclusion pattern: "!"'


@pytest.mark.parametrize("pattern", ["[", "a[", "[]a]", "[x-]", "\\", "[z-a]"])
def test_malformed_pattern_is_an_error_with_its_line(pattern: str) -> None:
    with pytest.raises(ParseError) as err:
        PatternMatcher(parse_ignore_file(f"ok\n{pattern}\n"), file=".dockerignore")
    assert err.value.message.startswith(".dockerignore:2: invalid pattern")


def test_walker_descends_only_where_an_exception_can_reinclude() -> None:
    literal = PatternMatcher(["a", "b", "!a/keep/file"])
    assert literal.only_prefix_exclusions
    assert literal.may_reinclude_below("a")
    assert literal.may_reinclude_below("a/keep")
    assert not literal.may_reinclude_below("a/other")
    assert not literal.may_reinclude_below("b")
    globbed = PatternMatcher(["a", "!a/*/file.go"])
    assert not globbed.only_prefix_exclusions
    assert globbed.may_reinclude_below("anything")
    trailing = PatternMatcher(["a", "!a/keep/**"])
    assert trailing.only_prefix_exclusions  # a trailing /** does not count as a glob
    assert trailing.may_reinclude_below("a") and not trailing.may_reinclude_below("a/other")
    assert not PatternMatcher(["a"]).may_reinclude_below("a")


def test_buildfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").write_text("from-context\n")
    files = tmp_path / "files"
    files.mkdir()
    buildfile = files / "app.Buildfile"
    buildfile.write_text("FROM scratch\n")
    assert find_ignore_file(ctx, buildfile) == ctx / ".dockerignore"
    (files / "app.Buildfile.dockerignore").write_text("from-buildfile\n")
    assert find_ignore_file(ctx, buildfile) == files / "app.Buildfile.dockerignore"
    pm = load_ignore(ctx, buildfile)
    assert pm is not None and pm.matches("from-buildfile") and not pm.matches("from-context")
    # `-f -`: only the context's file counts
    pm = load_ignore(ctx, None)
    assert pm is not None and pm.matches("from-context")
    (ctx / ".dockerignore").unlink()
    assert load_ignore(ctx, None) is None
