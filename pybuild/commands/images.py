"""The image commands: images, tag, rmi, inspect, history, log, diff, import, bootstrap.

Each opens the store (shared lock), calls layerstore, and prints. `inspect` looks the name up as an
image first and then, if the runner provides it, as a container (`runner.containers.inspect`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pybuild.cli import Globals
from pybuild.formatting import human_duration, human_size, table

if TYPE_CHECKING:
    from layerstore.images import CommitRecord, Image
    from layerstore.store import Store

COMPRESSION = click.option(
    "--compression", type=click.Choice(["zstd", "gzip"]), default="zstd", show_default=True,
    help="Layer compression (umoci and old registries need gzip).",
)


# ---------------------------------------------------------------------------- formatting (pure)


def ago(created: str | None, now: float | None = None) -> str:
    from layerstore.images import parse_time

    t = parse_time(created)
    if t is None:
        return "N/A"
    return human_duration((now or time.time()) - t) + " ago"


def _env_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        from pybuild.errors import PybuildError

        raise PybuildError(f"SOURCE_DATE_EPOCH={value!r} is not an integer") from None


def _record(store: Store, digest: str) -> CommitRecord:
    """The commit record of an image, or one made up from its blobs when it has none."""
    from layerstore.images import CommitRecord

    record = store.images.commit(digest)
    if record is not None:
        return record
    image = store.images.get(digest)
    return CommitRecord(manifest=digest, config=image.id, created=image.config.created, size=sum(l.size for l in image.layers))


# ---------------------------------------------------------------------------- commands


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Also list untagged images (intermediate build steps).")
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids.")
@click.argument("repository", required=False)
@click.pass_obj
def images(g: Globals, all_: bool, quiet: bool, digests: bool, no_trunc: bool, repository: str | None) -> None:
    """List images: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE (as docker images)."""
    from layerstore.digests import short_id
    from layerstore.reference import parse_reference
    from layerstore.store import Store

    with Store.open(g.root) as store:
        want = parse_reference(repository, default_tag=False) if repository else None
        rows: list[tuple[str, str, str, CommitRecord]] = []
        tagged = set()
        for tag in store.tags.all():
            if want and (tag.ref.repository != want.repository or (want.tag and tag.ref.tag != want.tag)):
                continue
            tagged.add(tag.digest)
            rows.append((tag.ref.familiar_repository, tag.ref.tag or "<none>", tag.digest, _record(store, tag.digest)))
        if all_ and not want:
            for record in store.images.all_commits():
                if record.manifest not in tagged:
                    rows.append(("<none>", "<none>", record.manifest, record))
    now = time.time()
    rows.sort(key=lambda r: (-(_created(r[3]) or 0), r[0], r[1]))
    if quiet:
        seen: list[str] = []
        for r in rows:
            i = r[3].config if no_trunc else short_id(r[3].config)
            if i not in seen:
                seen.append(i)
        click.echo("\n".join(seen)) if seen else None
        return
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    out = [header]
    for repo, tag, digest, record in rows:
        image_id = record.config if no_trunc else short_id(record.config)
        out.append([repo, tag] + ([digest] if digests else []) + [image_id, ago(record.created, now), human_size(record.size)])
    click.echo(table(out))


def _created(record: CommitRecord) -> float | None:
    from layerstore.images import parse_time

    return parse_time(record.created)


@click.command()
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag(g: Globals, source: str, target: str) -> None:
    """Create a tag TARGET that refers to SOURCE."""
    from layerstore.store import Store

    with Store.open(g.root) as store:
        image = store.resolve(source)
        store.tags.set(target, image.digest, message=f"tag {source}")


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove every tag of an image given by id, and images containers use.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rmi(g: Globals, force: bool, names: tuple[str, ...]) -> None:
    """Remove image tags (space is freed by `pybuild gc`)."""
    from layerstore.gc import containers_using
    from layerstore.reference import parse_reference
    from layerstore.store import Store
    from pybuild.errors import ParseError, PybuildError, StoreError

    failed: list[PybuildError] = []
    with Store.open(g.root) as store:
        for name in names:
            try:
                image = store.resolve(name)
                try:
                    ref = parse_reference(name)
                    by_tag = ref.digest is None and store.tags.get(ref) == image.digest
                except ParseError:
                    by_tag = False
                tags = [t for t in store.tags.of(image.digest)]
                if not by_tag and len(tags) > 1 and not force:
                    raise StoreError(f"{name}: image is referenced in multiple repositories", hint="use -f, or remove tags one by one")
                users = containers_using(store, image.digest)
                if users and not force and (not by_tag or len(tags) <= 1):
                    raise StoreError(f"{name}: image is used by container {users[0]}", hint="remove the container, or use -f")
                victims = [parse_reference(name)] if by_tag else [t.ref for t in tags]
                for ref in victims:
                    store.tags.delete(ref, message="rmi")
                    click.echo(f"Untagged: {ref.familiar}")
                if not store.tags.of(image.digest):
                    click.echo(f"Deleted: {image.id}")
            except PybuildError as e:
                failed.append(e)
    if failed:
        for e in failed[:-1]:
            click.echo(f"error: {e}", err=True)
        raise failed[-1]


def image_json(store: Store, image: Image) -> dict[str, Any]:
    """`inspect`'s document for an image, in Docker's field names."""
    tags = store.tags.of(image.digest)
    record = image.commit
    return {
        "Id": image.id,
        "Digest": image.digest,
        "RepoTags": [t.name for t in tags],
        "RepoDigests": sorted({f"{t.ref.familiar_repository}@{image.digest}" for t in tags}),
        "Parent": (record.parent if record else None) or "",
        "Comment": (image.history[-1].comment or "") if image.history else "",
        "Created": image.config.created or "",
        "Author": image.config.author or "",
        "Config": image.config.config.to_json(),
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Size": record.size if record else sum(l.size for l in image.layers),
        "RootFS": {"Type": "layers", "Layers": list(image.config.diff_ids)},
        "Layers": [{"Digest": l.digest, "MediaType": l.media_type, "Size": l.size} for l in image.layers],
        "Commit": record.to_json() if record else None,
    }


def _container_json(root: Path, name: str) -> dict[str, Any] | None:
    """The runner's inspect document for container `name`, if the runner provides one."""
    try:
        from runner import containers  # type: ignore[attr-defined]
    except ImportError:
        return None
    from pybuild.errors import NotFound

    fn = getattr(containers, "inspect", None)
    if fn is None:
        return None
    try:
        result: dict[str, Any] | None = fn(root, name)
    except NotFound:
        return None
    return result


@click.command()
@click.option("--type", "kind", type=click.Choice(["image", "container"]), help="Only look for this kind of object.")
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(g: Globals, kind: str | None, names: tuple[str, ...]) -> None:
    """Show images (or containers) as a JSON array."""
    from layerstore.store import Store
    from pybuild.errors import NotFound

    docs: list[dict[str, Any]] = []
    missing: list[str] = []
    with Store.open(g.root) as store:
        for name in names:
            doc = None
            if kind != "container":
                try:
                    doc = image_json(store, store.resolve(name))
                except NotFound:
                    doc = None
            if doc is None and kind != "image":
                doc = _container_json(g.root, name)
            if doc is None:
                missing.append(name)
            else:
                docs.append(doc)
    click.echo(json.dumps(docs, indent=4))
    if missing:
        for name in missing[:-1]:
            click.echo(f"error: no such object: {name}", err=True)
        raise NotFound(f"no such object: {missing[-1]}")


@click.command()
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and instructions.")
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
@click.option("-H", "--human", type=bool, default=True, show_default=True, help="Human-readable sizes and dates.")
@click.argument("name")
@click.pass_obj
def history(g: Globals, no_trunc: bool, quiet: bool, human: bool, name: str) -> None:
    """Show an image's history, newest first (as docker history)."""
    from layerstore.digests import short_id
    from layerstore.store import Store

    with Store.open(g.root) as store:
        image = store.resolve(name)
        # which image of the commit chain each history entry ends: it is that image's last entry
        owner = {len(i.history) - 1: i.id for i in store.images.chain(image)}
        layers = iter(reversed(image.layers))
        rows = [["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
        for index in range(len(image.history) - 1, -1, -1):
            entry = image.history[index]
            size = 0
            if not entry.empty_layer:
                layer = next(layers, None)
                if layer is not None:
                    known = store.layers.known(layer.diff_id)
                    size = known.uncompressed_size if known and known.uncompressed_size else layer.size
            image_id = owner.get(index)
            shown_id = "<missing>" if image_id is None else (image_id if no_trunc else short_id(image_id))
            created_by = entry.created_by if no_trunc or len(entry.created_by) <= 45 else entry.created_by[:44] + "…"
            created = ago(entry.created) if human else (entry.created or "")
            rows.append([shown_id, created, created_by, human_size(size) if human else str(size), entry.comment or ""])
    if quiet:
        click.echo("\n".join(r[0] for r in rows[1:]))
    else:
        click.echo(table(rows))


@click.command()
@click.argument("name")
@click.pass_obj
def log(g: Globals, name: str) -> None:
    """Show an image's commit chain, newest first (as git log)."""
    from layerstore.store import Store

    with Store.open(g.root) as store:
        chain = list(store.images.chain(store.resolve(name)))
        lines: list[str] = []
        for image in chain:
            record = image.commit
            tags = ", ".join(t.name for t in store.tags.of(image.digest))
            lines.append(f"commit {image.digest}" + (f" ({tags})" if tags else ""))
            lines.append(f"Image:  {image.id}")
            if record and record.parent:
                lines.append(f"Parent: {record.parent}")
            lines.append(f"Date:   {(record.time if record else None) or image.config.created or 'unknown'}")
            if record:
                lines.append(f"Size:   {human_size(record.layer_size)} added, {human_size(record.size)} in all")
            lines.append("")
            instruction = (record.instruction if record else "") or (image.history[-1].created_by if image.history else "")
            lines.append(f"    {instruction or '(no instruction recorded)'}")
            if record and record.message:
                lines.append(f"    {record.message}")
            lines.append("")
    click.echo("\n".join(lines).rstrip())


@click.command()
@click.argument("first")
@click.argument("second", required=False)
@click.pass_obj
def diff(g: Globals, first: str, second: str | None) -> None:
    """Show paths added (A), changed (C) and deleted (D) from FIRST to SECOND, or from FIRST's
    parent to FIRST."""
    from layerstore.store import Store
    from layerstore.tree_diff import diff_images

    with Store.open(g.root) as store:
        a = store.resolve(first)
        if second is None:
            old = store.images.get(a.parent) if a.parent and store.images.exists(a.parent) else None
            new = a
        else:
            old, new = a, store.resolve(second)
        changes = diff_images(store, old, new)
    for change in changes:
        click.echo(f"{change.kind} {change.path}")


@click.command(name="import")
@click.option("-m", "--message", help="Commit message for the image.")
@COMPRESSION
@click.argument("source")
@click.argument("name", required=False)
@click.pass_obj
def import_(g: Globals, message: str | None, compression: str, source: str, name: str | None) -> None:
    """Create an image from a rootfs tarball (plain or compressed; - for stdin) or a directory."""
    from layerstore.base_images import import_rootfs
    from layerstore.reference import parse_reference
    from layerstore.store import Store

    if name:
        parse_reference(name)
    with Store.open(g.root) as store:
        src = sys.stdin.buffer if source == "-" else Path(source)
        image = import_rootfs(
            store, src, name, source_name=source, message=message, compression=compression, source_date_epoch=_env_epoch()
        )
    click.echo(image.id)


@click.command()
@COMPRESSION
@click.option("--busybox", "busybox_path", type=click.Path(dir_okay=False, path_type=Path), default="/bin/busybox", show_default=True)
@click.option("--mirror", default="http://deb.debian.org/debian", show_default=True, help="Debian mirror for debootstrap.")
@click.option("-t", "--tag", "tag_name", help="Tag to give the image (default: the name given).")
@click.argument("what")
@click.pass_obj
def bootstrap(g: Globals, compression: str, busybox_path: Path, mirror: str, tag_name: str | None, what: str) -> None:
    """Create a base image offline: `busybox` (from the host's static busybox) or `debian:SUITE`
    (through debootstrap)."""
    from layerstore.base_images import bootstrap_busybox, bootstrap_debian
    from layerstore.reference import parse_reference
    from layerstore.store import Store
    from pybuild.errors import PybuildError

    ref = parse_reference(what)
    base = ref.path.removeprefix("library/")
    with Store.open(g.root) as store:
        if base == "busybox":
            image = bootstrap_busybox(store, tag_name or ref.familiar, busybox=busybox_path, compression=compression, source_date_epoch=_env_epoch())
        elif base == "debian":
            suite = ref.tag if ref.tag and ref.tag != "latest" else "bookworm"
            image = bootstrap_debian(store, suite, tag_name or f"debian:{suite}", mirror=mirror, compression=compression, source_date_epoch=_env_epoch())
        else:
            raise PybuildError(f"cannot bootstrap {what!r}", hint="pybuild bootstrap busybox | debian:bookworm")
    click.echo(image.id)
