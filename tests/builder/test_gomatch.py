"""Go's filepath.Match and filepath.Clean, checked against Go's own test table (path/filepath
match_test.go, as moby/patternmatcher copies it) plus the cases Buildfiles rely on."""

from __future__ import annotations

import pytest

from builder import gomatch

# (pattern, name, match, bad pattern)
GO_MATCH_TABLE = [
    ("abc", "abc", True, False),
    ("*", "abc", True, False),
    ("*c", "abc", True, False),
    ("a*", "a", True, False),
    ("a*", "abc", True, False),
    ("a*", "ab/c", False, False),
    ("a*/b", "abc/b", True, False),
    ("a*/b", "a/c/b", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, False),
    ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
    ("ab[c]", "abc", True, False),
    ("ab[b-d]", "abc", True, False),
    ("ab[e-g]", "abc", False, False),
    ("ab[^c]", "abc", False, False),
    ("ab[^b-d]", "abc", False, False),
    ("ab[^e-g]", "abc", True, False),
    ("a\\*b", "a*b", True, False),
    ("a\\*b", "ab", False, False),
    ("a?b", "a☺b", True, False),
    ("a[^a]b", "a☺b", True, False),
    ("a???b", "a☺b", False, False),
    ("a[^a][^a][^a]b", "a☺b", False, False),
    ("[a-ζ]*", "α", True, False),
    ("*[a-ζ]", "A", False, False),
    ("a?b", "a/b", False, False),
    ("a*b", "a/b", False, False),
    ("[\\]a]", "]", True, False),
    ("[\\-]", "-", True, False),
    ("[x\\-]", "x", True, False),
    ("[x\\-]", "-", True, False),
    ("[x\\-]", "z", False, False),
    ("[\\-x]", "x", True, False),
    ("[\\-x]", "-", True, False),
    ("[\\-x]", "a", False, False),
    ("[]a]", "]", False, True),
    ("[-]", "-", False, True),
    ("[x-]", "x", False, True),
    ("[x-]", "-", False, True),
    ("[x-]", "z", False, True),
    ("[-x]", "x", False, True),
    ("[-x]", "-", False, True),
    ("[-x]", "a", False, True),
    ("\\", "a", False, True),
    ("[a-b-c]", "a", False, True),
    ("[", "a", False, True),
    ("[^", "a", False, True),
    ("[^bc", "a", False, True),
    ("a[", "a", False, True),
    ("a[", "ab", False, True),
    ("a[", "x", False, True),
    ("a/b[", "x", False, True),
    ("*x", "xxx", True, False),
    # Buildfile cases: the reference's escaped bracket, a class matching `/` (Go allows it)
    ("arr[[]0].txt", "arr[0].txt", True, False),
    ("a[/]b", "a/b", True, False),
    ("dir[AB]", "dirA", True, False),
    ("file*", "fileA", True, False),
    ("file*", "dir/fileA", False, False),
]


@pytest.mark.parametrize(("pattern", "name", "matched", "bad"), GO_MATCH_TABLE)
def test_match_follows_go_table(pattern: str, name: str, matched: bool, bad: bool) -> None:
    if bad:
        with pytest.raises(gomatch.BadPattern):
            gomatch.match(pattern, name)
    else:
        assert gomatch.match(pattern, name) is matched


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        (".", "."),
        ("/", "/"),
        ("//", "/"),
        ("//a//b/", "/a/b"),
        ("a/b/../c/", "a/c"),
        ("../a", "../a"),
        ("a/../..", ".."),
        ("/../a", "/a"),
        ("./a/./b/.", "a/b"),
        ("!a/../b", "b"),
    ],
)
def test_clean_is_go_filepath_clean(path: str, cleaned: str) -> None:
    assert gomatch.clean(path) == cleaned


@pytest.mark.parametrize(
    ("name", "wild"),
    [("a", False), ("*.txt", True), ("a?", True), ("[ab]", True), ("a\\*b", False), ("a\\\\*", True)],
)
def test_has_wildcards_skips_escaped_characters(name: str, wild: bool) -> None:
    assert gomatch.has_wildcards(name) is wild
