"""--chmod values, octal and symbolic, as BuildKit's BSD-setmode port applies them (umask 0)."""

from __future__ import annotations

import pytest

from builder.chmod import ChmodError, parse_chmod

# (value, starting mode, is_dir, expected); expectations follow chmod(1) with a umask of 0
CASES = [
    ("755", 0o600, False, 0o755),
    ("0644", 0o777, True, 0o644),
    ("4755", 0o644, False, 0o4755),
    ("0", 0o777, False, 0o000),
    ("+x", 0o644, False, 0o755),
    ("a+x", 0o600, False, 0o711),
    ("u+x", 0o644, False, 0o744),
    ("go-w", 0o666, False, 0o644),
    ("go=", 0o777, False, 0o700),
    ("=rw,+X", 0o755, False, 0o777),
    ("=rw,+X", 0o644, False, 0o666),
    ("=rw,+X", 0o700, True, 0o777),
    ("+X", 0o644, False, 0o644),
    ("+X", 0o744, False, 0o755),
    ("+X", 0o644, True, 0o755),
    ("u=rwX,go=rX", 0o600, False, 0o644),
    # BuildKit's setmode port honours X only with `+`: `=rwX` gives no execute bit
    ("u=rwX,go=rX", 0o700, False, 0o644),
    ("u=rwX,go=rX", 0o600, True, 0o644),
    ("u=rwx,go=rx", 0o000, False, 0o755),
    ("u=rwx,go=u-w", 0o000, False, 0o755),
    ("go=u-w", 0o700, False, 0o755),
    ("g=u", 0o740, False, 0o770),
    ("o=g", 0o751, False, 0o755),
    ("u+s", 0o755, False, 0o4755),
    ("g+s", 0o755, True, 0o2755),
    ("+t", 0o777, True, 0o1777),
    ("o+t", 0o777, True, 0o777),  # sticky for "other" alone is ignored
    ("u+r-w", 0o200, False, 0o400),
    ("a-rwx", 0o777, False, 0o000),
    ("u=", 0o755, False, 0o055),
]


DIR = 0o40000
# dchapes-mode's TestApply table: (old mode, new mode, umask, value); DIR marks a directory
DCHAPES = [
    (0o777, 0o000, 0, "="), (0o777, 0o777, 0, "+"), (0o421, 0o421, 0, "+"), (0o777, 0o777, 0, "-"),
    (0o421, 0o421, 0, "-"), (0o421, 0o1421, 0, "+t"), (0o1421, 0o421, 0, "-t"),
    (0, 0o400, 0, "u+r"), (0, 0o200, 0, "u+w"), (0, 0o100, 0, "u+x"), (0, 0, 0, "u+X"),
    (0o001, 0o101, 0, "u+X"), (DIR, 0o100, 0, "u+X"), (0, 0o4000, 0, "u+s"),
    (0, 0o040, 0, "g+r"), (0, 0o020, 0, "g+w"), (0, 0o010, 0, "g+x"), (0, 0, 0, "g+X"),
    (0o100, 0o110, 0, "g+X"), (DIR, 0o010, 0, "g+X"), (0, 0o2000, 0, "g+s"),
    (0, 0o004, 0, "o+r"), (0, 0o002, 0, "o+w"), (0, 0o001, 0, "o+x"), (0, 0, 0, "o+X"),
    (0o100, 0o101, 0, "o+X"), (DIR, 0o001, 0, "o+X"), (0, 0, 0, "o+s"),
    (0, 0o421, 0, "0421"), (0, 0o7421, 0, "07421"),
    (0, 0o444, 0, "+r"), (0, 0o222, 0, "+w"), (0, 0o111, 0, "+x"), (0, 0, 0, "+X"),
    (0o010, 0o111, 0, "+X"), (DIR, 0o111, 0, "+X"), (0, 0o6000, 0, "+s"),
    (0, 0o440, 0o034, "+r"), (0, 0o220, 0o052, "+w"), (0, 0o110, 0o061, "+x"),
    (0o777, 0o333, 0, "-r"), (0o777, 0o555, 0, "-w"), (0o777, 0o666, 0, "-x"), (0o777, 0o777, 0, "-X"),
    (DIR | 0o777, 0o777, 0, "-X"), (0o6777, 0o777, 0, "-s"), (0o777, 0o337, 0o037, "-r"),
    (0o777, 0o557, 0o057, "-w"), (0o777, 0o667, 0o067, "-x"),
    (0o777, 0o377, 0, "u-r"), (0o777, 0o577, 0, "u-w"), (0o777, 0o677, 0, "u-x"), (0o777, 0o777, 0, "u-X"),
    (DIR | 0o777, 0o777, 0, "u-X"), (0o4777, 0o777, 0, "u-s"),
    (0, 0o600, 0, "u=rw"), (0o777, 0o677, 0, "u=rw"), (0o777, 0o077, 0, "u="), (0, 0o666, 0, "=rw"),
    (0o777, 0o666, 0, "=rw"),
    (0o042, 0o442, 0, "u=g"), (0o742, 0o442, 0, "u=g"), (0o722, 0o022, 0, "u=g-w"), (0o742, 0o442, 0, "u=g-w"),
    (0o762, 0o462, 0, "u=g-w"), (0o772, 0o572, 0, "u=g-w"),
    (0o021, 0o121, 0, "u+o"), (0o021, 0o221, 0, "u+g"), (0o021, 0o321, 0, "u+go"),
    (0o011, 0o111, 0o037, "u+uo"), (0o111, 0o011, 0o037, "-u"), (0o111, 0o011, 0o037, "-Xu"),
    (0o111, 0o011, 0o037, "-uX"),
    (0, 0o764, 0, "a=r,ug=rw,u+x"), (0o777, 0o764, 0, "a=r,ug=rw,u+x"),
    (0, 0o1624, 0, "o+r,g+w,a+t,g-s,u+og"), (0o2100, 0o1724, 0, "o+r,g+w,a+t,g-s,u+og"),
    (DIR | 0o6000, 0o5624, 0, "o+r,g+w,a+t,g-s,u+og"),
    (0o777, 0o644, 0, "644"), (0o777, 0o755, 0, "go-w"), (0o666, 0o664, 0o002, "=rw,+X"),
    (0o766, 0o775, 0o002, "=rw,+X"), (0o766, 0o765, 0o012, "=rw,+X"), (0, 0o755, 0, "u=rwx,go=rx"),
    (0, 0o755, 0, "u=rwx,go=u-w"), (0o777, 0o700, 0, "go="), (0o770, 0o755, 0, "go=u-w"),
    (0o670, 0o644, 0, "go=u-w"), (0o570, 0o555, 0, "go=u-w"), (0o370, 0o311, 0, "go=u-w"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "umask", "value"), DCHAPES)
def test_symbolic_modes_follow_dchapes_mode(old: int, new: int, umask: int, value: str) -> None:
    chmod = parse_chmod(value, umask=umask)
    assert oct(chmod.apply(old & 0o7777, is_dir=bool(old & DIR))) == oct(new)


@pytest.mark.parametrize(("value", "mode", "is_dir", "expected"), CASES)
def test_chmod_applies_like_chmod_1(value: str, mode: int, is_dir: bool, expected: int) -> None:
    assert oct(parse_chmod(value).apply(mode, is_dir=is_dir)) == oct(expected)


@pytest.mark.parametrize("value", ["10000", "0789", "8", "99999"])
def test_numeric_out_of_range_or_not_octal_is_the_octal_error(value: str) -> None:
    with pytest.raises(ChmodError, match="it should be octal string and between 0 and 07777"):
        parse_chmod(value)


@pytest.mark.parametrize("value", ["", "u", "rwx", "u+x,", "u*x", "a+x,,g+w", "z+x"])
def test_malformed_symbolic_modes_are_errors(value: str) -> None:
    with pytest.raises(ChmodError, match="invalid"):
        parse_chmod(value)
