"""The `pybuild` command line: a thin click layer over builder, runner and layerstore.

Commands live in `pybuild/commands/<area>.py` and are imported only when they run, so that
`pybuild --help` and `pybuild parse` start fast. `COMMANDS` is the one table of them; its short
help texts are what `--help` lists, so listing commands imports nothing.

`pybuild -f Buildfile -t app:1 .` is `pybuild build -f Buildfile -t app:1 .`: when the first word
after the global options is not a command name, `build` is implied (as with Buildah's `bud`).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pybuild import __version__
from pybuild.errors import PybuildError

DEFAULT_ROOT = "/var/lib/pybuild"


# the help of the --format option of images, ps, history and inspect (pybuild/templates.py reads
# the template; kept here so that declaring the option does not import the template parser)
FORMAT_HELP = "Print each item with a Go template, as docker does ('{{.ID}} {{.Names}}', 'table {{.ID}}\\t...')."


@dataclass(frozen=True)
class Globals:
    """What the global options give every command (`ctx.obj`)."""

    root: Path
    debug: bool


@dataclass(frozen=True)
class CommandEntry:
    module: str  # under pybuild.commands
    function: str  # the click.Command object in that module
    summary: str


# name -> where it lives; the summaries are what `pybuild --help` shows.
COMMANDS: dict[str, CommandEntry] = {
    e[0]: CommandEntry(*e[1:])
    for e in [
        # build
        ("build", "build", "build", "Build an image from a Buildfile (also: pybuild -f FILE -t TAG CTX)"),
        ("parse", "parse", "parse", "Parse a Buildfile and print its AST (dump or json)"),
        # store
        ("images", "images", "images", "List images"),
        ("tag", "images", "tag", "Give an image another name"),
        ("rmi", "images", "rmi", "Remove one or more image tags or images"),
        ("inspect", "images", "inspect", "Show an image's or container's details as JSON"),
        ("history", "images", "history", "Show an image's history, as docker history"),
        ("log", "images", "log", "Show an image's commit chain, as git log"),
        ("diff", "images", "diff", "Show paths added, changed and deleted between two images"),
        ("import", "images", "import_", "Create an image from a rootfs tarball or directory"),
        ("bootstrap", "images", "bootstrap", "Create a base image offline (busybox, debian:bookworm)"),
        ("gc", "maintenance", "gc", "Remove unreferenced blobs, layers and cache entries"),
        ("fsck", "maintenance", "fsck", "Verify the store's objects and references"),
        # containers
        ("run", "containers", "run", "Run a command in a new container"),
        ("ps", "containers", "ps", "List containers"),
        ("start", "containers", "start", "Start a stopped container"),
        ("stop", "containers", "stop", "Stop a container (StopSignal, then SIGKILL)"),
        ("restart", "containers", "restart", "Restart a container"),
        ("kill", "containers", "kill", "Send a signal to a container"),
        ("pause", "containers", "pause", "Freeze every process of a container"),
        ("unpause", "containers", "unpause", "Thaw a paused container"),
        ("exec", "containers", "exec_", "Run a command in a running container"),
        ("logs", "containers", "logs", "Show a container's output"),
        ("rm", "containers", "rm", "Remove containers"),
        ("commit", "containers", "commit", "Create an image from a container's changes"),
        ("volume", "containers", "volume", "Manage named volumes"),
        # moving images
        ("save", "transfer", "save", "Write images to an OCI layout or docker archive"),
        ("load", "transfer", "load", "Read images from an OCI layout or docker archive"),
        ("push", "transfer", "push", "Upload an image to a registry"),
        ("pull", "transfer", "pull", "Download an image from a registry"),
        ("login", "transfer", "login", "Store credentials for a registry"),
        ("logout", "transfer", "logout", "Forget credentials for a registry"),
    ]
}

# Global options that take a value, for finding where the command word is.
_GLOBAL_VALUE_OPTS = {"--root"}
_GLOBAL_FLAG_OPTS = {"--debug", "--no-debug", "--help", "-h", "--version"}


class PybuildGroup(click.Group):
    """A group whose commands load lazily and which defaults to `build`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(f"pybuild.commands.{entry.module}")
        except ModuleNotFoundError as e:
            if e.name != f"pybuild.commands.{entry.module}":
                raise
            raise PybuildError(f"command {cmd_name!r} is not available in this version") from e
        command = getattr(module, entry.function)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry.summary) for name, entry in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, imply_build(args))


def imply_build(args: list[str]) -> list[str]:
    """Insert `build` where the command word would be, when the user wrote build options directly.

    `pybuild --root R -f B -t x .` -> `pybuild --root R build -f B -t x .`
    """
    i = 0
    while i < len(args):
        word = args[i]
        if word in _GLOBAL_FLAG_OPTS:
            i += 1
        elif word in _GLOBAL_VALUE_OPTS:
            i += 2
        elif any(word.startswith(opt + "=") for opt in _GLOBAL_VALUE_OPTS):
            i += 1
        else:
            break
    if i >= len(args) or args[i] in COMMANDS:
        return args
    if "--help" in args[:i] or "-h" in args[:i] or "--version" in args[:i]:
        return args
    return args[:i] + ["build"] + args[i:]


@click.group(cls=PybuildGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PYBUILD_ROOT",
    default=DEFAULT_ROOT,
    show_default=True,
    help="The store directory (env PYBUILD_ROOT).",
)
@click.option("--debug", is_flag=True, help="Log debug detail and show tracebacks.")
@click.version_option(__version__, "--version", prog_name="pybuild")
@click.pass_context
def cli(ctx: click.Context, root: Path, debug: bool) -> None:
    """pybuild: build, run and move container images, without a daemon.

    `pybuild -f Buildfile -t app:1 [CONTEXT]` builds an image; `pybuild run --rm app:1` runs it.
    """
    if debug:
        import logging  # only here: importing it costs every command ~7 ms

        logging.basicConfig(level=logging.DEBUG, format="debug: %(name)s: %(message)s")
    ctx.obj = Globals(root=root.absolute(), debug=debug)


def _print_traceback() -> None:
    import traceback  # only with --debug or on a bug

    traceback.print_exc()


def print_error(err: PybuildError) -> None:
    """`error: ...` for each problem, each followed by its `hint: ...` if it has one."""
    for message, hint in err.entries():
        click.echo(f"error: {message}", err=True)
        if hint:
            click.echo(f"hint: {hint}", err=True)


def main(argv: list[str] | None = None) -> None:
    """The console script: runs the CLI and turns every failure into `error:` lines and an exit
    status (1, or what the error class says; 130 on Ctrl-C), with a traceback only under --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: args.index("--") if "--" in args else len(args)] or bool(
        os.environ.get("PYBUILD_DEBUG")
    )
    try:
        rv: Any = cli.main(args=args, prog_name="pybuild", standalone_mode=False)
    except PybuildError as e:
        if debug:
            _print_traceback()
        print_error(e)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort as e:
        # click turns Ctrl-C (and EOF at a prompt) into Abort; shells expect 130 for Ctrl-C.
        interrupted = isinstance(e.__context__, KeyboardInterrupt)
        click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
        sys.exit(130 if interrupted else 1)
    except click.ClickException as e:
        if debug:
            _print_traceback()
        click.echo(f"error: {e.format_message()}", err=True)
        if isinstance(e, click.UsageError) and e.ctx is not None:
            click.echo(f"hint: see '{e.ctx.command_path} --help'", err=True)
        sys.exit(1 if e.exit_code == 2 else e.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a message.
        sys.stderr.close()
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - last resort: a bug must not print a traceback by default
        if debug:
            _print_traceback()
        click.echo(f"error: internal error: {type(e).__name__}: {e}", err=True)
        click.echo("hint: this is a bug in pybuild; rerun with --debug for a traceback", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
