"""`pybuild parse`: print a Buildfile's parse, BuildKit's dump or our JSON, and check it.

Output goes to stdout; warnings (dump format) and errors go to stderr, one `error: FILE:LINE:COL:
message` line per error (with a `hint:` line after it where one helps), and the exit status is 1
when there is any error. When only the typed level fails (an unknown instruction, a bad flag), the
node-level output is still printed first, so a file can be diffed against BuildKit's parse anyway.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pybuild.errors import NotFound, PybuildError

DEFAULT_NAMES = ("Buildfile", "Dockerfile", "dockerfile")


def read_buildfile(file: str | None, directory: Path) -> tuple[bytes, Path | None]:
    """The Buildfile `pybuild parse` and `pybuild build` read, and its path (None for standard
    input): `file` (`-f FILE`), standard input for `-f -`, else the first of DEFAULT_NAMES found
    in `directory` (the build context, or the current directory for parse). Bytes, as read: the
    parser itself reports invalid UTF-8 with its line and column."""
    if file == "-":
        return sys.stdin.buffer.read(), None
    if file is None:
        found = next((directory / name for name in DEFAULT_NAMES if (directory / name).is_file()), None)
        if found is None:
            raise NotFound(
                f"no Buildfile in {directory.absolute()} (looked for {', '.join(DEFAULT_NAMES)})",
                hint="pass -f FILE, or -f - to read standard input",
            )
        path = found
    else:
        path = Path(file)
    try:
        return path.read_bytes(), path
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PybuildError(f"{path}: is a directory", hint=f"pass -f {path}/Buildfile") from None
    except OSError as e:
        raise PybuildError(f"{path}: cannot read: {e.strerror}") from None


@click.command("parse")
@click.option("-f", "--file", "file", metavar="FILE|-", default=None,
              help="The Buildfile to read; - reads standard input. Default: ./Buildfile, else ./Dockerfile, "
                   "else ./dockerfile.")
@click.option("--format", "fmt", type=click.Choice(["dump", "json"]), default="dump", show_default=True,
              help="dump: BuildKit's parse dump, one (instruction ...) line each; json: the node level with "
                   "line ranges, heredoc bodies and warnings.")
@click.pass_context
def parse(ctx: click.Context, file: str | None, fmt: str) -> None:
    """Parse a Buildfile and print its AST (dump or json).

    Every error found is reported (unknown instructions, bad flags, bad stage names, unterminated
    heredocs or quotes, ...), one line each, and the exit status is then 1.
    """
    import parser
    from pybuild.cli import print_error
    from pybuild.errors import ParseError, ParseErrors

    data, path = read_buildfile(file, Path("."))
    name = "<stdin>" if path is None else (file or str(path))
    tree, scan_errors = parser.scan(data, name)
    errors: list[ParseError] = []
    buildfile = None
    try:
        buildfile = parser.typed_buildfile(tree, scan_errors)
    except ParseErrors as e:
        errors = e.errors
    if not scan_errors:  # the node level is complete: print it even when the typed level failed
        if fmt == "json":
            click.echo(parser.to_json(buildfile or tree), nl=False)
        else:
            click.echo(parser.dump(tree), nl=False)
            for w in buildfile.warnings if buildfile else ():
                click.echo(f"warning: {name}:{w.line}: {w.message} ({w.rule})", err=True)
    if errors:
        print_error(ParseErrors(errors))
        ctx.exit(1)
