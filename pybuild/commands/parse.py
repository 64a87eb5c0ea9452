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


def _read(file: str | None) -> tuple[bytes, str]:
    """The Buildfile's bytes and the name to show in messages."""
    if file == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    if file is None:
        found = next((name for name in DEFAULT_NAMES if Path(name).is_file()), None)
        if found is None:
            raise NotFound("no Buildfile in the current directory (looked for " + ", ".join(DEFAULT_NAMES) + ")",
                           hint="pass -f FILE, or -f - to read standard input")
        file = found
    path = Path(file)
    try:
        return path.read_bytes(), file
    except FileNotFoundError:
        raise NotFound(f"{file}: no such file") from None
    except IsADirectoryError:
        raise PybuildError(f"{file}: is a directory", hint=f"pass -f {file.rstrip('/')}/Buildfile") from None
    except OSError as e:
        raise PybuildError(f"{file}: cannot read: {e.strerror}") from None


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

    data, name = _read(file)
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
