"""Images are commits: every instruction's result is an image whose commit parent is the previous
instruction's, so `pybuild log`, `history` and `diff` read a build step by step (issue 5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from layerstore.images import Image
from layerstore.store import Store
from tests.builder.buildtools import build, image, step_lines, write_context
from tests.conftest import Pybuild

pytestmark = pytest.mark.root

BUILDFILE = """FROM busybox
LABEL stage=one
ENV X=1
RUN echo x > /x
WORKDIR /app
COPY f .
CMD ["cat", "f"]
"""
INSTRUCTIONS = [
    'CMD ["cat" "f"]',
    "COPY f . # buildkit",
    "WORKDIR /app",
    "RUN /bin/sh -c echo x > /x # buildkit",
    "ENV X=1",
    "LABEL stage=one",
]


def chain(store_root: Path, name: str) -> list[Image]:
    with Store.open(store_root) as store:
        return list(store.images.chain(store.resolve(name)))


def test_every_instruction_is_a_commit_on_the_previous_one(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", BUILDFILE, {"f": "F\n"})
    build(pb, ctx, "-t", "app:1")
    images = chain(busybox_store, "app:1")
    base = image(busybox_store, "busybox")
    assert [i.commit.instruction for i in images[:6] if i.commit] == INSTRUCTIONS
    assert images[6].digest == base.digest
    for child, parent in zip(images, images[1:], strict=False):
        assert child.parent == parent.digest
        assert child.history[: len(parent.history)] == parent.history and len(child.history) == len(parent.history) + 1
    # `pybuild log`: one entry per instruction, newest first, each naming its parent and its size
    log = pb("log", "app:1").stdout
    assert re.findall(r"^    (\S.*)$", log, re.M)[:6] == INSTRUCTIONS
    assert log.count("\nParent: ") == 6 and f"Parent: {base.digest}" in log
    assert "Size:   0B added" in log  # a metadata step adds no layer
    # `pybuild history` knows the image of every entry, as the legacy builder's did
    rows = pb("history", "-q", "app:1").stdout.split()
    assert "<missing>" not in rows[:6] and rows[6] == base.id[7:19]


def test_diff_without_a_second_image_shows_what_one_step_changed(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", BUILDFILE, {"f": "F\n"})
    build(pb, ctx, "-t", "app:1")
    cmd, copy, workdir, run = chain(busybox_store, "app:1")[:4]
    assert pb("diff", cmd.digest).stdout == ""
    assert pb("diff", copy.digest).stdout == "A /app/f\n"
    assert pb("diff", workdir.digest).stdout == "A /app\n"
    assert pb("diff", run.digest).stdout == "A /x\n"


def test_cached_rebuilds_reuse_the_step_images_and_keep_the_chain_whole(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", BUILDFILE, {"f": "F\n"})
    build(pb, ctx, "-t", "app:1")
    first = [i.digest for i in chain(busybox_store, "app:1")]
    build(pb, ctx, "-t", "app:2")
    assert [i.digest for i in chain(busybox_store, "app:2")] == first
    # a metadata change before the layer steps reruns nothing, but every later image is new
    (ctx / "Buildfile").write_text(BUILDFILE.replace("stage=one", "stage=two"))
    log = build(pb, ctx, "-t", "app:3").stderr
    assert not [s for s in step_lines(log, "DONE") if re.search(r"\] (RUN|COPY|WORKDIR) ", s)]
    assert len([s for s in step_lines(log, "CACHED") if re.search(r"\] (RUN|COPY|WORKDIR) ", s)]) == 3
    third = chain(busybox_store, "app:3")
    assert [i.commit.instruction for i in third[:6] if i.commit][5] == "LABEL stage=two"
    assert not set(i.digest for i in third[:6]) & set(first)
    assert third[6].digest == first[6]
    assert [i.layers[-1] for i in third[:4]] == [i.layers[-1] for i in chain(busybox_store, "app:1")[:4]]


def test_maintainer_sets_the_author_and_children_inherit_it(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nMAINTAINER Jane Doe <jane@example.com>\nRUN true\n")
    build(pb, ctx, "-t", "m:1")
    assert image(busybox_store, "m:1").config.author == "Jane Doe <jane@example.com>"
    assert '"Author": "Jane Doe <jane@example.com>"' in pb("inspect", "m:1").stdout
    child = write_context(tmp_path / "child", "FROM m:1\nENV A=1\n")
    build(pb, child, "-t", "m:2")
    assert image(busybox_store, "m:2").config.author == "Jane Doe <jane@example.com>"


def test_a_config_change_the_history_text_does_not_show_is_not_a_cache_hit(busybox_store: Path, pb: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", "FROM busybox\nHEALTHCHECK --interval=5s CMD true\n")
    build(pb, ctx, "-t", "h:1")
    (ctx / "Buildfile").write_text("FROM busybox\nHEALTHCHECK --interval=6s CMD true\n")
    build(pb, ctx, "-t", "h:2")
    assert image(busybox_store, "h:2").config.config.healthcheck == {"Test": ["CMD-SHELL", "true"], "Interval": 6_000_000_000}
