"""`commit`: a container's changes as a new image, exactly as a RUN step is committed.

The container is frozen (unless `pause=False`) so its upper dir does not change while it is read,
then the layer store diffs the upper dir into one layer (`Store.commit`, `consume=False`: the
container keeps its upper dir) on top of the container's image, with one history entry and a
commit record naming the parent, and the container is thawed. Volumes and bind mounts are mounted
over the container's tree and never written into the upper dir, and the mount points the image
lacked live in the init layer: none of them is in the layer.

The new image's config is the container's (its command, environment, user, working directory
as it ran), with `changes` applied by the caller, as `docker commit` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from runner import state
from runner.entrypoint import command_string

if TYPE_CHECKING:
    from layerstore.images import Image
    from layerstore.oci import ContainerConfig


def container_config(base: ContainerConfig, s: state.ContainerState) -> ContainerConfig:
    """The image config's `config` for a commit of `s`: the image's, with what the container ran
    with. Pure."""
    c = s.config
    return replace(
        base,
        env=c.env,
        cmd=c.cmd,
        entrypoint=c.entrypoint,
        user=c.user or None,
        working_dir=c.cwd if c.cwd != "/" or base.working_dir else base.working_dir,
        volumes={m.destination: {} for m in c.mounts if m.kind == "volume"} or base.volumes,
    )


def commit(
    root: Path,
    cdir: Path,
    *,
    tag: str | None = None,
    message: str | None = None,
    author: str | None = None,
    changes: Callable[[ContainerConfig], ContainerConfig] | None = None,
    pause: bool = True,
) -> Image:
    """Commit the container in `cdir`; the new image (tagged `tag` if given)."""
    from layerstore.store import Store

    s = state.observed(state.load(cdir))
    cg = s.get_cgroup() if s.status in (state.RUNNING, state.PAUSED) else None
    froze = False
    if pause and cg is not None and s.status == state.RUNNING:
        cg.freeze()
        froze = True
    try:
        with Store.open(root) as store:
            parent = store.images.get(s.image_digest)
            config = container_config(parent.config.config, s)
            if changes is not None:
                config = changes(config)
            image = store.commit(
                cdir / "upper",
                parent=parent,
                created_by=command_string(s.config.argv),
                config=config,
                comment=message or None,
                author=author or None,
                message=message or f"commit of container {s.short_id}",
                consume=False,
            )
            if tag:
                store.tag(image, tag, message=f"commit: container {s.short_id}")
            return image
    finally:
        if froze and cg is not None:
            cg.thaw()
