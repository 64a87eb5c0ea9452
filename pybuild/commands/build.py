"""`pybuild build` (also `pybuild -f Buildfile -t app:1 [CONTEXT]`): build an image.

Progress goes to stderr (`--progress`); with `-q` only the image id is printed, on stdout. A failed
step prints the end of its output and the Buildfile lines around it, then one `error:` line
naming `Buildfile:LINE`; the exit status is 1. Nothing is tagged unless the whole build succeeds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from pybuild.cli import Globals
from pybuild.errors import BuildError, NotFound, PybuildError
from pybuild.progress import MODES as PROGRESS_MODES


def _excerpt(text: str, line: int) -> list[str]:
    lines = text.splitlines()
    out = []
    for n in range(max(1, line - 2), min(len(lines), line + 2) + 1):
        mark = ">>>" if n == line else "   "
        out.append(f" {n:>3} | {mark} {lines[n - 1]}")
    return out


def _report_failure(err: BuildError, text: str) -> None:
    """Docker's failure box: the step's last output lines, then the Buildfile lines around it."""
    if err.output_tail:
        click.echo("------", err=True)
        for line in err.output_tail.splitlines():
            click.echo(f" {line}", err=True)
        click.echo("------", err=True)
    if err.location and ":" in err.location:
        try:
            number = int(err.location.rsplit(":", 1)[1])
        except ValueError:
            return
        click.echo(err.location, err=True)
        click.echo("-" * 20, err=True)
        for row in _excerpt(text, number):
            click.echo(row, err=True)
        click.echo("-" * 20, err=True)


@click.command("build", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("context", default=".", metavar="[CONTEXT]")
@click.option("-f", "--file", "file", metavar="FILE|-", help="The Buildfile (default: CONTEXT/Buildfile, then Dockerfile); - reads standard input.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]", help="Name the image (repeatable).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY[=VALUE]", help="Set a build argument; KEY alone takes it from the environment (repeatable).")
@click.option("--target", metavar="STAGE", help="Build up to this stage (and only the stages it needs).")
@click.option("--no-cache", is_flag=True, help="Run every step; the results still fill the cache.")
@click.option("--no-cache-filter", "no_cache_filter", multiple=True, metavar="STAGE", help="Run every step of this stage without the cache (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Add a label to the image (repeatable).")
@click.option("--iidfile", type=click.Path(dir_okay=False, path_type=Path), help="Write the image ID to this file.")
@click.option("--network", type=click.Choice(["default", "none", "host"]), default="default", show_default=True, help="Network for RUN steps that do not set --network (default: the host's).")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID[,src=FILE|env=VAR]", help="A secret for RUN --mount=type=secret (repeatable); never stored.")
@click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True, help="How to show progress (on stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Show no progress; print the image ID.")
@click.option("--squash", is_flag=True, help="Merge the layers this build adds into one.")
@click.option("--explain-cache", is_flag=True, help="Say for every step that runs why the cache missed.")
@click.pass_obj
def build(
    obj: Globals,
    context: str,
    file: str | None,
    tags: tuple[str, ...],
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    no_cache_filter: tuple[str, ...],
    labels: tuple[str, ...],
    iidfile: Path | None,
    network: str,
    secrets: tuple[str, ...],
    progress: str,
    quiet: bool,
    squash: bool,
    explain_cache: bool,
) -> None:
    """Build an image from a Buildfile and a context directory (default: the current one).

    CONTEXT `-` reads the Buildfile from standard input and uses an empty context.
    """
    from builder.buildargs import parse_build_args
    from builder.engine import BuildOptions
    from builder.engine import build as run_build
    from builder.runmounts import parse_secret
    from layerstore.reference import parse_reference
    from layerstore.store import Store
    from pybuild.progress import reporter
    from pybuild.commands.parse import read_buildfile

    if os.geteuid() != 0:
        raise PybuildError("building needs root (overlay mounts and namespaces)", hint="run pybuild as root")
    empty: tempfile.TemporaryDirectory[str] | None = None
    if context == "-":
        empty = tempfile.TemporaryDirectory(prefix="pybuild-empty-context-")
        context_dir = Path(empty.name)
        file = "-"
    else:
        context_dir = Path(context).absolute()
        if not context_dir.is_dir():
            raise NotFound(f"build context {context}: no such directory")
    for tag in tags:
        parse_reference(tag)  # a bad name fails before any work
    label_map = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not key:
            raise PybuildError(f"invalid --label {label!r}: expected KEY=VALUE")
        label_map[key] = value
    data, path = read_buildfile(file, context_dir)
    text = data.decode("utf-8", "surrogateescape")  # the parser reports invalid UTF-8 itself
    name = path.name if path is not None else "Buildfile"  # BuildKit's messages: `Dockerfile:12`
    options = BuildOptions(
        context=context_dir,
        buildfile_text=text,
        buildfile_name=name,
        buildfile_path=path.absolute() if path is not None else None,
        tags=tags,
        build_args=parse_build_args(build_args),
        target=target,
        no_cache=no_cache,
        no_cache_filter=no_cache_filter,
        labels=label_map,
        network=network,
        secrets={s.id: s for s in map(parse_secret, secrets)},
        squash=squash,
        environ=dict(os.environ),
    )
    report = reporter("quiet" if quiet else progress, sys.stderr, explain=explain_cache)
    try:
        with Store.open(obj.root) as store:
            image = run_build(store, options, report)
    except BuildError as e:
        report.close()
        _report_failure(e, text)
        raise
    finally:
        report.close()
        if empty is not None:
            empty.cleanup()
    if iidfile is not None:
        iidfile.write_text(image.id)
    if quiet:
        click.echo(image.id)
