"""gc and fsck."""

from __future__ import annotations

import click

from pybuild.cli import Globals


@click.command()
@click.option("--grace", type=click.FloatRange(min=0), default=3600, show_default=True,
              help="Keep unreferenced objects younger than this many seconds.")
@click.option("--prune-cache", is_flag=True,
              help="Drop the build cache first (its entries, stat caches and explanations), as docker builder prune.")
@click.option("--cache-mounts", is_flag=True, help="Also remove RUN --mount=type=cache directories.")
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("-v", "--verbose", is_flag=True, help="List every object removed.")
@click.pass_obj
def gc(g: Globals, grace: float, prune_cache: bool, cache_mounts: bool, dry_run: bool, verbose: bool) -> None:
    """Remove blobs, layers, commits and temp files that no tag, build-cache entry or container
    reaches (mark and sweep, under the exclusive store lock), and the cgroups of build steps whose
    build was killed."""
    from layerstore.gc import collect
    from layerstore.store import Store
    from pybuild.formatting import human_size
    from runner.cgroups import sweep_steps

    with Store.open(g.root, exclusive=True) as store:
        freed = collect(store, grace_seconds=grace, prune_cache=prune_cache, cache_mounts=cache_mounts, dry_run=dry_run)
    cgroups = sweep_steps(grace, dry_run=dry_run)
    if verbose:
        for item in [*freed.items, *(f"cgroup {name}" for name in cgroups)]:
            click.echo(("would remove " if dry_run else "removed ") + item)
    counts = [f"{freed.blobs} blobs", f"{freed.commits} commits", f"{freed.unpacked} unpacked layers",
              f"{freed.layer_records} layer records", f"{freed.cache_entries} cache entries",
              f"{freed.tmp_entries} temp entries"]
    extras = [(freed.build_files, "build-cache files"), (freed.cache_mounts, "cache mounts"),
              (freed.containers, "unfinished containers"), (len(cgroups), "build-step cgroups")]
    counts += [f"{n} {what}" for n, what in extras if n]
    click.echo(f"{'Would free' if dry_run else 'Freed'} {human_size(freed.bytes)}: {', '.join(counts)}")


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
