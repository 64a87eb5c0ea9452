"""gc and fsck."""

from __future__ import annotations

import click

from pybuild.cli import Globals


@click.command()
@click.option("--grace", type=float, default=3600, show_default=True, help="Keep unreferenced objects younger than this many seconds.")
@click.option("--prune-cache", is_flag=True, help="Drop every build-cache entry first (as docker builder prune).")
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("-v", "--verbose", is_flag=True, help="List every object removed.")
@click.pass_obj
def gc(g: Globals, grace: float, prune_cache: bool, dry_run: bool, verbose: bool) -> None:
    """Remove blobs, layers, commits and temp files that no tag, build-cache entry or container
    reaches (mark and sweep, under the exclusive store lock)."""
    from layerstore.gc import collect
    from layerstore.store import Store
    from pybuild.formatting import human_size

    with Store.open(g.root, exclusive=True) as store:
        freed = collect(store, grace_seconds=grace, prune_cache=prune_cache, dry_run=dry_run)
    if verbose:
        for item in freed.items:
            click.echo(("would remove " if dry_run else "removed ") + item)
    verb = "Would free" if dry_run else "Freed"
    click.echo(
        f"{verb} {human_size(freed.blob_bytes)}: {freed.blobs} blobs, {freed.commits} commits, "
        f"{freed.unpacked} unpacked layers, {freed.layer_records} layer records, "
        f"{freed.cache_entries} cache entries, {freed.tmp_entries} temp entries"
    )


@click.command()
@click.option("--full", is_flag=True, help="Also decompress every layer and check its diff_id.")
@click.pass_obj
def fsck(g: Globals, full: bool) -> None:
    """Verify blob digests and sizes, references, the history invariant, and refs vs index.json."""
    from layerstore.fsck import check
    from layerstore.store import Store
    from pybuild.errors import StoreError

    with Store.open(g.root) as store:
        problems = check(store, full=full)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        if p.severity == "warning":
            click.echo(f"warning: {p.message}", err=True)
    for p in errors[:-1]:
        click.echo(f"error: {p.message}", err=True)
    if errors:
        raise StoreError(errors[-1].message, hint=f"{len(errors)} problem(s) found")
    click.echo("ok")
