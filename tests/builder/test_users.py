"""--chown names resolved against the image's own /etc/passwd and /etc/group."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.users import Identity, UserError, chown_identity

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1001:App:/home/app:/bin/sh
broken line
"""
GROUP = """root:x:0:
staff:x:50:app,other
appgrp:x:1001:
wheel:x:10:app
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    return root


@pytest.mark.parametrize(
    ("spec", "uid", "gid"),
    [
        ("app", 1000, 1001),  # a name alone: its primary group
        ("1000", 1000, 1000),  # a number alone: the same number as group
        ("app:staff", 1000, 50),
        ("app:7", 1000, 7),
        ("42:staff", 42, 50),
        ("42:43", 42, 43),
        ("root", 0, 0),
    ],
)
def test_chown_names_come_from_the_destination_image(rootfs: Path, spec: str, uid: int, gid: int) -> None:
    assert chown_identity(spec, rootfs) == Identity(uid, gid)


@pytest.mark.parametrize(("spec", "message"), [("nobody", "unable to find user nobody"), ("app:nogroup", "unable to find group nogroup")])
def test_unknown_chown_names_fail(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        chown_identity(spec, rootfs)


def test_chown_names_need_a_passwd_file_but_numbers_do_not(tmp_path: Path) -> None:
    assert chown_identity("5:6", tmp_path) == Identity(5, 6)
    with pytest.raises(UserError, match="unable to find user app"):
        chown_identity("app", tmp_path)


def test_passwd_is_read_inside_the_image_even_through_a_symlinked_etc(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "real").mkdir(parents=True)
    (root / "real/passwd").write_text("app:x:7:8::/:/bin/sh\n")
    (root / "etc").symlink_to("/real")  # absolute: must resolve inside the image, not the host
    assert chown_identity("app", root) == Identity(7, 8)
