"""The image commands: images, tag, rmi, inspect, history, log, diff, import, bootstrap.

Each opens the store (shared lock), calls layerstore, and prints. `inspect` looks the name up as an
image first and then as a container (`runner.containers.inspect`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pybuild.cli import FORMAT_HELP, Globals
from pybuild.formatting import go_time, human_duration, human_size, table

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
    size = sum(store.layers.uncompressed_size(layer) for layer in image.layers)
    return CommitRecord(manifest=digest, config=image.id, created=image.config.created, size=size)


def _docker_bool(ctx: click.Context, param: click.Parameter, value: str) -> bool:
    """A boolean written as Docker writes it, `-H=false`: click hands the value on as `=false`."""
    return bool(click.BOOL.convert(value.removeprefix("="), param, ctx))


# ---------------------------------------------------------------------------- commands


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Also list intermediate and build-cache images.")
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE.")
@click.option("--format", "fmt", metavar="TEMPLATE", help=FORMAT_HELP)
@click.argument("repository", required=False)
@click.pass_obj
def images(g: Globals, all_: bool, quiet: bool, digests: bool, no_trunc: bool, filters: tuple[str, ...],
           fmt: str | None, repository: str | None) -> None:
    """List images: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE (as docker images). Untagged images
    are listed when nothing builds on them and no build-cache entry keeps them (dangling), all of
    them with -a."""
    from layerstore.digests import short_id
    from layerstore.store import Store

    from pybuild.templates import parse_format

    template = parse_format(fmt) if fmt and not quiet else None
    with Store.open(g.root) as store:
        match = _row_filter(store, filters, repository)
        records = {r.manifest: r for r in store.images.all_commits()}
        parents = {r.parent for r in records.values() if r.parent}
        cached = {digest for _key, digest in store.cache.items()}
        rows: list[_Row] = []
        for tag in store.tags.all():
            rows.append(_Row(tag.ref.familiar_repository, tag.ref.tag or "<none>", tag.digest,
                             records.get(tag.digest) or _record(store, tag.digest), dangling=False))
        tagged = {row.digest for row in rows}
        for digest, record in records.items():
            if digest in tagged:
                continue
            dangling = digest not in parents and digest not in cached
            if all_ or dangling:
                rows.append(_Row("<none>", "<none>", digest, record, dangling=dangling))
        rows = [row for row in rows if match(row)]
    now = time.time()
    rows.sort(key=lambda r: (-(r.created or 0), r.repository, r.tag))
    if quiet:
        ids = dict.fromkeys(r.record.config if no_trunc else short_id(r.record.config) for r in rows)
        if ids:
            click.echo("\n".join(ids))
        return
    fields = [{
        "ID": r.record.config if no_trunc else short_id(r.record.config),
        "Repository": r.repository,
        "Tag": r.tag,
        "Digest": r.digest,
        "CreatedSince": ago(r.record.created, now),
        "CreatedAt": go_time(r.created) if r.created is not None else "",
        "Size": human_size(r.record.size),
    } for r in rows]
    if template is not None:
        from pybuild.templates import render_rows

        _echo(render_rows(template, fields, IMAGE_FIELDS))
        return
    columns = ["Repository", "Tag"] + (["Digest"] if digests else []) + ["ID", "CreatedSince", "Size"]
    click.echo(table([[IMAGE_FIELDS[c] for c in columns], *([f[c] for c in columns] for f in fields)]))


# the fields of `docker images --format` and their column headers
IMAGE_FIELDS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE"}
# the fields of `docker history --format` and their column headers
HISTORY_FIELDS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                  "Size": "SIZE", "Comment": "COMMENT"}


def _echo(text: str) -> None:
    if text:
        click.echo(text)


@dataclass(frozen=True)
class _Row:
    repository: str
    tag: str
    digest: str
    record: CommitRecord
    dangling: bool

    @property
    def created(self) -> float | None:
        from layerstore.images import parse_time

        return parse_time(self.record.created)


def _row_filter(store: Store, filters: tuple[str, ...], repository: str | None) -> Callable[[_Row], bool]:
    """The rows `images REPOSITORY[:TAG] -f KEY=VALUE...` keeps, as docker images: every filter
    must hold; REPOSITORY and reference= may hold shell patterns (`*` stops at `/`)."""
    from layerstore.reference import parse_reference
    from pybuild.errors import PybuildError

    tests: list[Callable[[_Row], bool]] = []
    if repository:
        if any(c in repository for c in "*?["):
            tests.append(_reference_matcher(repository))
        else:
            want = parse_reference(repository, default_tag=False)
            tests.append(lambda r: r.tag != "<none>" and parse_reference(f"{r.repository}:{r.tag}").repository
                         == want.repository and (want.tag is None or r.tag == want.tag))
    for item in filters:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep and key != "label":
            raise PybuildError(f"bad format of filter {item!r} (expected name=value)")
        if key == "dangling":
            if value.lower() not in ("true", "false", "1", "0"):
                raise PybuildError(f"invalid filter 'dangling={value}': true or false")
            tests.append(_dangling_test(value.lower() in ("true", "1")))
        elif key == "reference":
            tests.append(_reference_matcher(value))
        elif key == "label":
            tests.append(_label_matcher(store, value))
        elif key in ("before", "since"):
            tests.append(_created_test(key, store.resolve(value)))
        else:
            raise PybuildError(f"invalid filter {key!r}", hint="dangling, reference, label, before or since")
    return lambda row: all(test(row) for test in tests)


def _dangling_test(want: bool) -> Callable[[_Row], bool]:
    return lambda r: r.dangling == want


def _created_test(key: str, pivot_image: Image) -> Callable[[_Row], bool]:
    """`before=IMAGE` or `since=IMAGE`: created earlier, or later, than IMAGE."""
    from layerstore.images import parse_time

    pivot = parse_time(pivot_image.config.created) or 0.0
    if key == "before":
        return lambda r: (r.created or 0) < pivot
    return lambda r: (r.created or 0) > pivot


def _reference_matcher(pattern: str) -> Callable[[_Row], bool]:
    """`busy*`, `app:1.*`, `*/app`: a shell pattern over the familiar name, `*` not crossing `/`
    (Go's path.Match, as Docker's reference filter); without a tag it matches the repository."""
    import re

    parts = []
    for c in pattern:
        parts.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) if c not in "[]" else c)
    rx = re.compile("".join(parts) + r"\Z")
    with_tag = ":" in pattern.rsplit("/", 1)[-1]
    return lambda r: r.tag != "<none>" and bool(rx.match(f"{r.repository}:{r.tag}" if with_tag else r.repository))


def _label_matcher(store: Store, spec: str) -> Callable[[_Row], bool]:
    key, sep, value = spec.partition("=")

    def test(row: _Row) -> bool:
        labels = store.images.get(row.digest).config.config.labels or {}
        return key in labels and (not sep or labels[key] == value)

    return test


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
    """Remove images: untag them, and delete an image once nothing refers to it any more (its
    own layers, config and build-cache entry; what other images share stays)."""
    from layerstore.store import Store
    from pybuild.errors import PybuildError

    failed: list[PybuildError] = []
    deletable: list[str] = []
    with Store.open(g.root) as store:
        for name in names:
            try:
                deletable += _untag(store, name, force)
            except PybuildError as e:
                failed.append(e)
    if deletable:
        for image_id in _delete(g.root, deletable):
            click.echo(f"Deleted: {image_id}")
    if failed:
        for error in failed[:-1]:
            click.echo(f"error: {error}", err=True)
        raise failed[-1]


def _untag(store: Store, name: str, force: bool) -> list[str]:
    """Remove the tags `rmi NAME` removes (printing `Untagged:` lines, as Docker) and return the
    manifest digest of the image if it may now be deleted. Conflicts are Docker's, in its words."""
    from layerstore.digests import short_id
    from layerstore.reach import children, containers_using, mark, roots
    from layerstore.reference import parse_reference
    from pybuild.errors import ParseError, StoreError

    image = store.resolve(name)
    try:
        ref = parse_reference(name)
        by_tag = ref.digest is None and store.tags.get(ref) == image.digest
    except ParseError:
        by_tag = False
    tags = [t.ref for t in store.tags.of(image.digest)]
    users = containers_using(store, image.digest)
    short = short_id(image.id)
    if by_tag:
        if users and len(tags) == 1 and not force:
            raise StoreError(f'conflict: unable to remove repository reference "{name}" (must force) - '
                             f"container {users[0][:12]} is using its referenced image {short}",
                             hint="remove the container first, or use -f")
        victims = [parse_reference(name)]
    else:
        if len(tags) > 1 and not force:
            raise StoreError(f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple "
                             "repositories", hint="remove the tags one by one, or use -f")
        if users and not force:
            raise StoreError(f"conflict: unable to delete {short} (must be forced) - image is being used by container "
                             f"{users[0][:12]}", hint="remove the container first, or use -f")
        if set(children(store, image.digest)) & mark(store, roots(store)).manifests:
            raise StoreError(f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images")
        victims = tags
    for victim in victims:
        store.tags.delete(victim, message="rmi")
        click.echo(f"Untagged: {victim.familiar}")
    return [] if users or store.tags.of(image.digest) else [image.digest]


def _delete(root: Path, digests: list[str]) -> list[str]:
    """Delete the untagged images `digests` under the exclusive store lock and return their ids
    (and those of the untagged parents deleted with them). When another pybuild process holds the
    store (a build, a pull), nothing is deleted now: `pybuild gc` frees the space later."""
    from layerstore.gc import delete_images
    from layerstore.locks import StoreBusy
    from layerstore.store import Store

    try:
        with Store.open(root, exclusive=True, timeout=0) as store:
            return delete_images(store, digests).deleted_images
    except StoreBusy:
        click.echo("warning: another pybuild process is using the store: the untagged images stay until "
                   "`pybuild gc` (or the next rmi) removes them", err=True)
        return []


# The keys `docker image inspect` always shows in Config (the others only when set), with Docker's
# values for "not set".
_DOCKER_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}
_NEVER_TAGGED = "0001-01-01T00:00:00Z"


def image_json(store: Store, image: Image) -> dict[str, Any]:
    """`inspect`'s document for an image: `docker image inspect`'s fields, in its order and with
    its values for what is not set, then pybuild's own (Digest, Layers, Commit)."""
    from layerstore.images import rfc3339

    tags = store.tags.of(image.digest)
    record = image.commit
    config = image.config
    tag_times = [e.time for t in tags for e in store.tags.log(t.ref) if e.new == image.digest]
    doc: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": [t.name for t in tags],
        "RepoDigests": sorted({f"{t.ref.familiar_repository}@{image.digest}" for t in tags}),
        "Parent": (record.parent if record else None) or "",
        "Comment": str(config.extra.get("comment") or (image.history[-1].comment if image.history else "") or ""),
        "Created": config.created or "",
        "DockerVersion": str(config.extra.get("docker_version") or ""),
        "Author": config.author or "",
        "Config": _DOCKER_CONFIG_DEFAULTS | config.config.to_json(),
        "Architecture": config.architecture,
    }
    if config.variant:
        doc["Variant"] = config.variant
    doc |= {
        "Os": config.os,
        "Size": record.size if record else sum(store.layers.uncompressed_size(layer) for layer in image.layers),
        "RootFS": {"Type": "layers", "Layers": list(config.diff_ids)},
        "Metadata": {"LastTagTime": rfc3339(max(tag_times)) if tag_times else _NEVER_TAGGED},
        "Digest": image.digest,
        "Layers": [{"Digest": l.digest, "MediaType": l.media_type, "Size": l.size} for l in image.layers],
        "Commit": record.to_json() if record else None,
    }
    return doc


def _container_json(root: Path, name: str) -> dict[str, Any] | None:
    """The runner's inspect document for container `name`, None if there is no such container."""
    from pybuild.errors import NotFound
    from runner.containers import inspect as inspect_container

    try:
        return inspect_container(root, name)
    except NotFound:
        return None


@click.command()
@click.option("--type", "kind", type=click.Choice(["image", "container"]), help="Only look for this kind of object.")
@click.option("-f", "--format", "fmt", metavar="TEMPLATE", help=FORMAT_HELP)
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(g: Globals, kind: str | None, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show images (or containers) as a JSON array, or each through a template (-f)."""
    from layerstore.store import Store
    from pybuild.errors import NotFound

    from pybuild.templates import parse_format

    template = parse_format(fmt) if fmt else None

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
    if template is None:
        click.echo(json.dumps(docs, indent=4))
    for doc in docs if template is not None else []:
        click.echo(template.render(doc))
    if missing:
        for name in missing[:-1]:
            click.echo(f"error: no such object: {name}", err=True)
        raise NotFound(f"no such object: {missing[-1]}")


@click.command()
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and instructions.")
@click.option("-q", "--quiet", is_flag=True, help="Only image ids.")
@click.option("-H", "--human", default="true", show_default=True, metavar="BOOLEAN", callback=_docker_bool,
              help="Human-readable sizes and dates (-H=false: RFC 3339 times, sizes in bytes).")
@click.option("--format", "fmt", metavar="TEMPLATE", help=FORMAT_HELP)
@click.argument("name")
@click.pass_obj
def history(g: Globals, no_trunc: bool, quiet: bool, human: bool, fmt: str | None, name: str) -> None:
    """Show an image's history, newest first (as docker history)."""
    from layerstore.digests import short_id
    from layerstore.images import parse_time, rfc3339
    from layerstore.store import Store
    from pybuild.templates import parse_format, render_rows

    template = parse_format(fmt) if fmt and not quiet else None
    with Store.open(g.root) as store:
        image = store.resolve(name)
        # which image of the commit chain each history entry ends: it is that image's last entry
        owner = {len(i.history) - 1: i.id for i in store.images.chain(image)}
        layers = iter(reversed(image.layers))
        fields: list[dict[str, str]] = []
        for index in range(len(image.history) - 1, -1, -1):
            entry = image.history[index]
            size = 0
            if not entry.empty_layer:
                layer = next(layers, None)
                if layer is not None:
                    size = store.layers.uncompressed_size(layer)
            image_id = owner.get(index)
            shown_id = "<missing>" if image_id is None else (image_id if no_trunc else short_id(image_id))
            created_by = entry.created_by if no_trunc or len(entry.created_by) <= 45 else entry.created_by[:44] + "…"
            created = parse_time(entry.created)
            fields.append({
                "ID": shown_id,
                "CreatedSince": ago(entry.created) if human else (entry.created or ""),
                "CreatedAt": rfc3339(created) if created is not None else "",
                "CreatedBy": created_by,
                "Size": human_size(size) if human else str(size),
                "Comment": entry.comment or "",
            })
    if quiet:
        click.echo("\n".join(f["ID"] for f in fields))
    elif template is not None:
        _echo(render_rows(template, fields, HISTORY_FIELDS))
    else:
        columns = ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
        click.echo(table([[HISTORY_FIELDS[c] for c in columns], *([f[c] for c in columns] for f in fields)]))


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
@click.option("-m", "--message", help="Commit message (the history comment; default 'Imported from SOURCE').")
@click.option("-c", "--change", multiple=True, metavar="INSTRUCTION",
              help="Apply a Buildfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
                   "STOPSIGNAL, USER, VOLUME, WORKDIR.")
@COMPRESSION
@click.argument("source")
@click.argument("name", required=False)
@click.pass_obj
def import_(g: Globals, message: str | None, change: tuple[str, ...], compression: str, source: str,
            name: str | None) -> None:
    """Create an image from a rootfs tarball (plain or compressed; - for stdin) or a directory, as
    docker import."""
    from layerstore.base_images import import_rootfs
    from layerstore.oci import ContainerConfig
    from layerstore.reference import parse_reference
    from layerstore.store import Store

    if name:
        parse_reference(name)
    config = ContainerConfig()
    if change:
        from pybuild.commands.containers import apply_changes  # `commit --change`'s rules, shared

        config = apply_changes(config, change)
    with Store.open(g.root) as store:
        src = sys.stdin.buffer if source == "-" else Path(source)
        image = import_rootfs(store, src, name, source_name=source, message=message, config=config,
                              compression=compression, source_date_epoch=_env_epoch())
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
