"""The container commands: run, ps, start, stop, restart, kill, pause, unpause, exec, logs, rm,
commit and the `volume` group, with Docker's flags and output.

Only this module prints. Imports of the runner happen inside the commands, and `run` imports
nothing heavy before the container starts (no lark, no zstandard on that path).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pybuild.cli import FORMAT_HELP
from pybuild.errors import PybuildError, RuntimeError_

if TYPE_CHECKING:
    from layerstore.oci import ContainerConfig
    from pybuild.cli import Globals

_RUN_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


def _as_run_error(e: PybuildError) -> PybuildError:
    """`run` exits 125 for its own failures (126/127 stay: the command could not be run)."""
    if e.exit_code == 1:
        e.exit_code = 125
    return e


def _as_command_error(e: PybuildError) -> PybuildError:
    """Commands other than `run` exit 1 for their own failures, as docker's do (an exec'd
    command that cannot be run keeps 126/127)."""
    if e.exit_code == 125:
        e.exit_code = 1
    return e


def _exits_1(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Apply `_as_command_error` to whatever the command raises."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PybuildError as e:
            raise _as_command_error(e) from None

    return wrapper


def _for_each(refs: Sequence[str], action: Callable[[str], None]) -> None:
    """Apply `action` to every ref, printing each ref done (as docker does) and every failure;
    raise once at the end if any failed."""
    failed: list[PybuildError] = []
    for ref in refs:
        try:
            action(ref)
            click.echo(ref)
        except PybuildError as e:
            failed.append(_as_command_error(e))
    if failed:
        for earlier in failed[:-1]:
            click.echo(f"error: {earlier}", err=True)
        raise failed[-1]


def _for_each_container(root: Path, refs: Sequence[str], action: Callable[[Path], None]) -> None:
    """`_for_each` with each ref found first: `action` gets the container's directory."""
    from runner import containers

    _for_each(refs, lambda ref: action(containers.find(root, ref)))


def _env_from_files(files: Sequence[str]) -> list[str]:
    """`--env-file` lines: K=V or K (taken from the caller); blank lines and # comments skipped."""
    out = []
    for name in files:
        try:
            text = Path(name).read_text()
        except OSError as e:
            raise PybuildError(f"--env-file {name}: {e.strerror}") from None
        for line in text.splitlines():
            line = line.lstrip()
            if not line or line.startswith("#"):
                continue
            out.append(line)
    return out


# -- run -----------------------------------------------------------------------------------------


class _RunCommand(click.Command):
    """`run` refuses a bad flag or flag value as one of its own failures: exit 125, as docker run."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            raise RuntimeError_(e.format_message(), hint=f"see '{ctx.command_path} --help'") from None


@click.command(cls=_RunCommand, context_settings=_RUN_CONTEXT)
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the container ID.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container (and its anonymous volumes) when it exits.")
@click.option("--name", help="Name the container.")
@click.option("-e", "--env", multiple=True, help="Set K=V (or pass K from this environment).")
@click.option("--env-file", multiple=True, help="Read K=V lines from a file.")
@click.option("-v", "--volume", multiple=True, help="Bind mount SRC:DST[:ro], named volume NAME:DST[:ro], or anonymous volume DST.")
@click.option("--volumes-from", multiple=True, help="Mount the volumes of CONTAINER[:ro|:rw].")
@click.option("--entrypoint", help="Replace the image's ENTRYPOINT ('' clears it).")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="user[:group] or uid[:gid].")
@click.option("-h", "--hostname", help="Container host name (default: the short ID).")
@click.option("--network", "--net", "network", default="none", show_default=True, help="none (own namespace, loopback only) or host.")
@click.option("-m", "--memory", help="Memory limit (e.g. 64m, 1g); an OOM kills the container.")
@click.option("--cpus", type=float, help="CPU time limit in CPUs (e.g. 0.5).")
@click.option("--pids-limit", type=int, help="Maximum number of processes (-1: unlimited).")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--init", is_flag=True, help="Run a reaping init as PID 1 that forwards signals.")
@click.option("--cap-add", multiple=True, help="Add a capability (or ALL).")
@click.option("--cap-drop", multiple=True, help="Drop a capability (or ALL).")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(g: Globals, /, **kw: Any) -> int:
    """Run COMMAND (or the image's ENTRYPOINT/CMD) in a new container of IMAGE."""
    from runner import containers, supervisor
    from runner.cgroups import Limits

    try:
        if kw["tty"] and kw["interactive"] and not kw["detach"] and not os.isatty(0):
            raise RuntimeError_("the input device is not a TTY", hint="drop -t, or run from a terminal")
        memory = None
        if kw["memory"]:
            from runner.display import parse_memory

            memory = parse_memory(kw["memory"])
        if kw["cpus"] is not None and not 0.01 <= kw["cpus"] <= (os.cpu_count() or 1):
            raise RuntimeError_(f"range of CPUs is from 0.01 to {os.cpu_count() or 1}.00, as there are only {os.cpu_count() or 1} CPUs available")
        opts = containers.CreateOptions(
            image=kw["image"],
            command=tuple(kw["command"]),
            name=kw["name"],
            env=tuple(_env_from_files(kw["env_file"]) + list(kw["env"])),
            volumes=tuple(kw["volume"]),
            volumes_from=tuple(kw["volumes_from"]),
            entrypoint=kw["entrypoint"],
            workdir=kw["workdir"],
            user=kw["user"],
            hostname=kw["hostname"],
            network=kw["network"],
            limits=Limits(memory=memory, cpus=kw["cpus"], pids=kw["pids_limit"]),
            interactive=kw["interactive"],
            tty=kw["tty"],
            init=kw["init"],
            auto_remove=kw["auto_remove"],
            cap_add=tuple(kw["cap_add"]),
            cap_drop=tuple(kw["cap_drop"]),
        )
        cdir, record, _ = containers.create(g.root, opts)
    except PybuildError as e:
        raise _as_run_error(e) from None
    # What is imported by now lives as long as the process: the collector need not walk it again,
    # neither while the container runs nor at exit (~10 ms of a short run).
    gc.freeze()
    try:
        if kw["detach"]:
            supervisor.spawn(g.root, cdir)
            click.echo(record.id)
            return 0
        status = supervisor.run_attached(g.root, cdir, log=not kw["auto_remove"])
    except PybuildError as e:
        if kw["auto_remove"]:
            containers.remove(g.root, cdir, remove_volumes=True)
        raise _as_run_error(e) from None
    if status.oom_killed:
        click.echo(f"error: container {record.short_id} was killed: out of memory (limit {kw['memory']})", err=True)
    return status.code


# -- listing and inspecting ----------------------------------------------------------------------


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers (default: running ones).")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands.")
@click.option("--format", "fmt", metavar="TEMPLATE", help=FORMAT_HELP)
@click.pass_obj
@_exits_1
def ps(g: Globals, show_all: bool, quiet: bool, no_trunc: bool, fmt: str | None) -> None:
    """List containers, as docker ps."""
    import time

    from pybuild.formatting import PS_FIELDS, PS_HEADER, ps_fields, ps_rows, table
    from pybuild.templates import parse_format, render_rows
    from runner import containers, state

    template = parse_format(fmt) if fmt and not quiet else None
    states = containers.list_states(g.root)
    if not show_all:
        states = [s for s in states if s.status in (state.RUNNING, state.PAUSED)]
    if quiet:
        for s in states:
            click.echo(s.id if no_trunc else s.short_id)
        return
    now = time.time()
    if template is not None:
        text = render_rows(template, [ps_fields(s, now, no_trunc=no_trunc) for s in states], PS_FIELDS)
        if text:
            click.echo(text)
        return
    click.echo(table([PS_HEADER, *ps_rows(states, now, no_trunc=no_trunc)]))


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the container stops.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each chunk with its RFC 3339 time.")
@click.option("-n", "--tail", default="all", help="Only the last N records ('all').")
@click.argument("container")
@click.pass_obj
@_exits_1
def logs(g: Globals, follow: bool, timestamps: bool, tail: str, container: str) -> None:
    """Show a container's output (its stdout on stdout, its stderr on stderr)."""
    import time

    from runner import containers, logfile, state

    cdir, s = containers.load(g.root, container)
    offset = 0
    records, offset = logfile.read_records(cdir / "log", offset)
    if tail != "all":
        try:
            n = int(tail)
        except ValueError:
            raise PybuildError(f"invalid --tail value: {tail!r}") from None
        records = records[-n:] if n > 0 else []
    while True:
        for r in records:
            out = sys.stdout.buffer if r.stream == logfile.STDOUT else sys.stderr.buffer
            if timestamps:
                out.write(state.now_from_ns(r.time_ns).encode() + b" ")
            out.write(r.data)
            out.flush()
        if not follow:
            return
        current = state.observed(state.load(cdir)) if (cdir / "state.json").exists() else None
        records, offset = logfile.read_records(cdir / "log", offset)
        if not records:
            if current is None or current.status not in (state.RUNNING, state.PAUSED):
                records, offset = logfile.read_records(cdir / "log", offset)
                if not records:
                    return
            time.sleep(0.05)


# -- lifecycle -------------------------------------------------------------------------------------


@click.command()
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def start(g: Globals, containers_: tuple[str, ...]) -> None:
    """Start stopped containers (detached; their upper dirs are kept)."""
    from runner import containers, state, supervisor

    def one(ref: str) -> None:
        cdir, s = containers.load(g.root, ref)
        if s.status not in (state.RUNNING, state.PAUSED):
            supervisor.spawn(g.root, cdir)

    _for_each(containers_, one)


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before SIGKILL (default 10; -1: no SIGKILL).")
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def stop(g: Globals, timeout: int | None, containers_: tuple[str, ...]) -> None:
    """Stop containers: the image's StopSignal (default SIGTERM), then SIGKILL after the grace time."""
    from runner import lifecycle

    _for_each_container(g.root, containers_, lambda cdir: lifecycle.stop(cdir, timeout))


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None, help="Seconds to wait before SIGKILL (default 10; -1: no SIGKILL).")
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def restart(g: Globals, timeout: int | None, containers_: tuple[str, ...]) -> None:
    """Stop (if running) and start containers again."""
    from runner import lifecycle, supervisor

    def one(cdir: Path) -> None:
        lifecycle.stop(cdir, timeout)
        supervisor.spawn(g.root, cdir)

    _for_each_container(g.root, containers_, one)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True, help="Signal name or number.")
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
@_exits_1
def kill(g: Globals, sig: str, containers_: tuple[str, ...]) -> None:
    """Send a signal to the main process of containers."""
    from runner import containers, lifecycle

    number = containers.signal_number(sig)
    _for_each_container(g.root, containers_, lambda cdir: lifecycle.kill(cdir, number))


@click.command()
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def pause(g: Globals, containers_: tuple[str, ...]) -> None:
    """Freeze every process of containers (cgroup freezer)."""
    from runner import lifecycle

    _for_each_container(g.root, containers_, lifecycle.pause)


@click.command()
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def unpause(g: Globals, containers_: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    from runner import lifecycle

    _for_each_container(g.root, containers_, lifecycle.unpause)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True, help="Also remove its anonymous volumes.")
@click.argument("containers_", metavar="CONTAINER...", nargs=-1, required=True)
@click.pass_obj
def rm(g: Globals, force: bool, volumes: bool, containers_: tuple[str, ...]) -> None:
    """Remove containers."""
    import signal

    from runner import containers, lifecycle, state

    def one(ref: str) -> None:
        cdir, s = containers.load(g.root, ref)
        if s.status in (state.RUNNING, state.PAUSED):
            if not force:
                raise RuntimeError_(
                    f'cannot remove container "/{s.name}": container is running',
                    hint="stop the container before removing or force remove (rm -f)",
                )
            cg = s.get_cgroup()
            if cg is not None:
                cg.kill_all(signal.SIGKILL)
                if s.status == state.PAUSED:
                    cg.thaw()
            lifecycle.send_signal(s, signal.SIGKILL)
            if lifecycle.wait_recorded(cdir) is None:
                return  # a --rm container: its supervisor has removed it
        containers.remove(g.root, cdir, remove_volumes=volumes)

    _for_each(containers_, one)


# -- exec --------------------------------------------------------------------------------------------


@click.command(context_settings=_RUN_CONTEXT)
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-e", "--env", multiple=True, help="Set K=V (or pass K from this environment).")
@click.option("-u", "--user", help="user[:group] (default: the container's).")
@click.option("-w", "--workdir", help="Working directory (default: the container's).")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(g: Globals, interactive: bool, tty: bool, env: tuple[str, ...], user: str | None, workdir: str | None, container: str, command: tuple[str, ...]) -> int:
    """Run COMMAND in a running container; exits with its status."""
    from contextlib import nullcontext

    from runner import containers, enter, terminal
    from runner.launch import proxy_signals
    from runner.spec import ExitStatus, ProcessSpec
    from runner.streams import Relay, writer_to

    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        if tty and interactive and not os.isatty(0):
            raise RuntimeError_("the input device is not a TTY", hint="drop -t, or run from a terminal")
        _, s = containers.load(g.root, container)
        proc = ProcessSpec(
            tuple(command),
            containers.merge_env(s.config.env, env, dict(os.environ)),
            workdir or s.config.cwd,
            s.config.user if user is None else user,
            tty,
        )
        launched = enter.exec_in(
            s, proc, stdin=0 if interactive and not tty else null, stdout=1, stderr=2,
            winsize=terminal.get_winsize(0) if tty else None,
        )
    except PybuildError as e:
        raise _as_command_error(e) from None
    finally:
        os.close(null)
    relay = Relay()
    if launched.master is not None:
        relay.add_source(launched.master, writer_to(1))
        if interactive:
            relay.add_forward(0, launched.master)
    proxy_signals(launched)
    with terminal.raw_mode(0) if (tty and interactive) else nullcontext():
        status = launched.wait(relay)
    return ExitStatus.from_wait_status(status).code


# -- commit ------------------------------------------------------------------------------------------


# moby's validCommitCommands (builder/dockerfile): the instructions `commit --change` takes
_CHANGE_KEYWORDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


@click.command()
@click.option("-m", "--message", help="Commit message (the history entry's comment).")
@click.option("-a", "--author", help="Author, e.g. 'Name <email>'.")
@click.option("-c", "--change", multiple=True, help="Apply a Buildfile instruction: " + ", ".join(_CHANGE_KEYWORDS) + ".")
@click.option("-p", "--pause", type=bool, default=True, show_default=True, help="Freeze the container while committing.")
@click.argument("container")
@click.argument("repository", required=False)
@click.pass_obj
@_exits_1
def commit(g: Globals, message: str | None, author: str | None, change: tuple[str, ...], pause: bool, container: str, repository: str | None) -> None:
    """Create an image from a container's changes (one layer, history, parent)."""
    from runner import commit as commit_mod
    from runner import containers

    cdir = containers.find(g.root, container)
    changes = (lambda cfg: apply_changes(cfg, change)) if change else None
    image = commit_mod.commit(g.root, cdir, tag=repository, message=message, author=author, changes=changes, pause=pause)
    click.echo(image.id)


def apply_changes(config: ContainerConfig, changes: Sequence[str]) -> ContainerConfig:
    """`docker commit --change`: each change is Buildfile text, applied to the config exactly as a
    build applies the instruction (variables expanded from the config's Env, shell forms wrapped
    in its SHELL, ENTRYPOINT clearing CMD unless a change before it set one, signals and ports
    checked). Raises ParseErrors/BuildError for text a Buildfile would refuse."""
    from builder.buildargs import Scope
    from builder.imageconfig import StageConfig, apply_metadata
    from parser import parse_instructions

    stage = StageConfig(config, Scope()).with_scope(Scope.from_image_env(config.env or ()))
    for text in changes:
        for instruction in parse_instructions(text, file="--change"):
            if instruction.keyword not in _CHANGE_KEYWORDS:
                raise PybuildError(f"{instruction.keyword} is not a valid change command", hint="use one of " + ", ".join(_CHANGE_KEYWORDS))
            stage, _ = apply_metadata(instruction, stage)
    return stage.config


# -- volumes -----------------------------------------------------------------------------------------


@click.group()
def volume() -> None:
    """Manage named volumes (kept in the store's volumes/)."""


@volume.command("create")
@click.option("--label", multiple=True, help="K=V metadata.")
@click.argument("name", required=False)
@click.pass_obj
@_exits_1
def volume_create(g: Globals, label: tuple[str, ...], name: str | None) -> None:
    """Create a volume (a random name if none is given); print its name."""
    from runner import state, volumes

    labels = dict(item.partition("=")[::2] for item in label)
    click.echo(volumes.create(g.root, name, labels=labels, now=state.now()).name)


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only names.")
@click.pass_obj
def volume_ls(g: Globals, quiet: bool) -> None:
    """List volumes."""
    from pybuild.formatting import table
    from runner import volumes

    found = volumes.all_volumes(g.root)
    if quiet:
        for v in found:
            click.echo(v.name)
        return
    click.echo(table([("DRIVER", "VOLUME NAME"), *[("local", v.name) for v in found]]))


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="Do not fail when a volume does not exist.")
@click.argument("names", metavar="VOLUME...", nargs=-1, required=True)
@click.pass_obj
def volume_rm(g: Globals, force: bool, names: tuple[str, ...]) -> None:
    """Remove volumes that no container uses."""
    from pybuild.errors import NotFound
    from runner import containers, volumes

    def one(name: str) -> None:
        users = containers.volume_users(g.root, name)
        if users:
            raise RuntimeError_(f"remove {name}: volume is in use - [{', '.join(users)}]")
        try:
            volumes.remove(g.root, name)
        except NotFound:
            if not force:
                raise

    _for_each(names, one)


@volume.command("inspect")
@click.argument("names", metavar="VOLUME...", nargs=-1, required=True)
@click.pass_obj
@_exits_1
def volume_inspect(g: Globals, names: tuple[str, ...]) -> None:
    """Show volumes as JSON."""
    import json

    from runner import volumes

    click.echo(json.dumps([volumes.get(g.root, n).inspect() for n in names], indent=4))
