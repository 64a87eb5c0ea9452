"""The steps that change the file system: RUN, COPY/ADD, WORKDIR.

Each `prepare_*` function computes a step's cache-key inputs and history line without writing
anything (hashing COPY sources, resolving mounts), and returns a `Prepared` whose `execute()`
does the work on a cache miss: an empty upper dir under the store's tmp/, changed through the
runner's overlay or sandbox over the layers below the step, handed back for the engine to commit.
A failure removes the upper dir; nothing reaches the store.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from builder.buildargs import run_history
from builder.cachekey import StepInputs, copy_inputs, run_inputs
from builder.chmod import ChmodError, parse_chmod
from builder.contenthash import Hasher
from builder.context import SourceTree
from builder.copy import CopyError, CopyOptions, mkdir_all
from builder.imageconfig import Expander, StageConfig, command_argv
from builder.runmounts import (
    Backing,
    RunMount,
    Secret,
    cache_id,
    context_subtree,
    key_mount,
    mount_target,
    resolve_mounts,
    secret_id,
    seed_from,
)
from builder.sources import CopySpec, apply_sources, digest_sources, resolve_sources
from builder.users import Identity, chown_identity
from layerstore.images import Image
from layerstore.layers import Layer
from layerstore.rootpath import resolve_in_root
from layerstore.store import Store
from parser import Add, Copy, Run
from parser.gotext import go_quote
from parser.heredoc import HeredocError, parse_marker
from parser.shell import expand_heredoc
from pybuild.errors import BuildError, PybuildError, RuntimeError_
from runner.mounts import overlay_rootfs, remove_tree
from runner.spec import Mount as RunnerMount
from runner.spec import ProcessSpec, SandboxSpec
from runner.users import lookup as lookup_user

T = TypeVar("T")
Layers = tuple[Layer, ...]
Below = Callable[[], "Layers"]  # the layers under a step, read only when it runs
SourceOf = Callable[[str], tuple[str, Below]]  # a --from name -> (its key, its layers)
OUTPUT_TAIL_LINES = 20
DEFAULT_HOSTNAME = "buildkitsandbox"


@dataclass
class BuildEnv:
    """What every step of one build shares: the store, the context, the options that reach
    steps, the images loaded so far and where temporary things go."""

    store: Store
    context: SourceTree
    hashers: dict[int, Hasher]
    build_args: Mapping[str, str]
    secrets: Mapping[str, Secret]
    environ: Mapping[str, str]
    network: str
    epoch: int | None
    scratch: Path
    on_output: Callable[[str, bytes], None] = lambda stream, data: None
    images: dict[str, Image] = field(default_factory=dict)

    def image(self, digest: str) -> Image:
        if digest not in self.images:
            self.images[digest] = self.store.images.get(digest)
        return self.images[digest]

    def hasher(self, tree: SourceTree) -> Hasher:
        if id(tree) not in self.hashers:
            self.hashers[id(tree)] = Hasher(tree)
        return self.hashers[id(tree)]

    def lowers(self, layers: Layers) -> list[Path]:
        """The overlay lower dirs of `layers` (bottom first given; top first returned), unpacking
        as needed; an empty dir when there are none (scratch)."""
        if layers:
            # The same layer twice (two steps that changed nothing give the same empty layer)
            # would make overlayfs refuse the mount (ELOOP); its topmost copy covers everything
            # the lower copy provides, so keeping only that one means the same file system.
            dirs = [self.store.layers.unpack(layer) for layer in reversed(layers)]
            return list(dict.fromkeys(dirs))
        empty = self.scratch / "empty"
        empty.mkdir(exist_ok=True)
        return [empty]


@dataclass
class Prepared:
    """A step ready to run: its key inputs, history line, and the work to do on a miss."""

    inputs: StepInputs
    created_by: str
    execute: Callable[[], Path]  # returns the upper dir holding the step's changes


class StepFailed(BuildError):
    """A RUN whose process exited non-zero (the message is BuildKit's)."""


@contextmanager
def _new_upper(env: BuildEnv, prefix: str) -> Iterator[Path]:
    """An empty upper dir in its own temp dir under the store's tmp/: removed if the block
    fails, left for the engine to commit when it succeeds."""
    upper = Path(tempfile.mkdtemp(prefix=prefix, dir=env.store.tmp)) / "upper"
    upper.mkdir()
    try:
        yield upper
    except BaseException:
        discard(upper)
        raise


def discard(upper: Path) -> None:
    remove_tree(upper.parent)


# --------------------------------------------------------------------------------------- RUN


def run_argv(run: Run, sc: StageConfig) -> tuple[tuple[str, ...], str | None, str | None]:
    """RUN's argv (F51, F53), plus (name, body) of a heredoc script to place in /dev/pipes."""
    if run.heredocs and run.command:
        line = run.command[0]
        try:
            marker = parse_marker(line) if len(run.heredocs) == 1 else None
        except HeredocError as e:
            raise BuildError(str(e), location=str(run.location)) from None
        if marker is not None and run.prepend_shell:
            body = run.heredocs[0].chomped
            if body.startswith("#!"):
                # BuildKit mounts the script at /dev/pipes/NAME and, the line being shell
                # form, runs it through SHELL: `/bin/sh -c /dev/pipes/NAME` (also in history)
                name = run.heredocs[0].name
                return sc.shell + ("/dev/pipes/" + name,), name, body
            return sc.shell + (body,), None, None
        text = line + "".join("\n" + h.content + h.name for h in run.heredocs)
        return sc.shell + (text,), None, None
    argv = command_argv(sc, run.command, run.prepend_shell)
    if not argv:
        raise BuildError("RUN needs a command", location=str(run.location))
    return argv, None, None


def prepare_run(env: BuildEnv, run: Run, sc: StageConfig, x: Expander, parent_key: str, below: Below, stage_keys: SourceOf) -> Prepared:
    """RUN: argv in SHELL (shell form) or as is, env = ENV + declared ARGs, user, workdir,
    network and mounts in the key; executed in the runner's sandbox."""
    if run.security != "sandbox":
        raise BuildError("RUN --security=insecure is not supported: steps always run sandboxed", location=x.where)
    if run.devices:
        raise BuildError("RUN --device is not supported", location=x.where)
    argv, pipe_name, pipe_body = run_argv(run, sc)
    workdir = sc.workdir
    options = resolve_mounts(run.mounts, x.word, x.where)
    mounts: list[RunMount] = []
    for m in options:
        target = mount_target(m, workdir)
        if m.type == "bind":
            if m.from_:
                ident = "stage:" + stage_keys(m.from_)[0] + ":" + (m.source or "/")
            else:
                tree = env.context
                ident = env.hasher(tree).digest(tree.entry(m.source or "/"))
        elif m.type == "cache":
            ident = cache_id(m, env.build_args.get("BUILDKIT_CACHE_MOUNT_NS", ""))
            if m.from_:
                ident += "|from:" + stage_keys(m.from_)[0] + ":" + (m.source or "/")
        elif m.type == "secret":
            ident = secret_id(m)
        else:
            ident = ""
        mounts.append(RunMount(m, target, ident))
    network = run.network if run.network != "default" else env.network
    effective = "host" if network == "default" else network
    hostname = env.build_args.get("BUILDKIT_SANDBOX_HOSTNAME", DEFAULT_HOSTNAME)
    inputs = run_inputs(
        parent_key,
        argv=argv,
        env=sc.scope.run_env(),
        user=sc.user,
        workdir=workdir,
        network=effective,
        mounts=[key_mount(m.options, m.target, m.ident) for m in mounts],
        epoch=env.epoch,
        hostname=hostname,
    )
    created_by = run_history(argv, sc.scope) + " # buildkit"

    def execute() -> Path:
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        partial = {"stdout": b"", "stderr": b""}

        def on_output(stream: str, data: bytes) -> None:
            env.on_output(stream, data)
            lines = (partial[stream] + data).split(b"\n")
            partial[stream] = lines.pop()
            tail.extend(line.decode("utf-8", "replace") for line in lines)

        with _new_upper(env, "run-") as upper:
            with ExitStack() as stack:
                backing = Backing(env.store.root, Path(tempfile.mkdtemp(prefix="mounts-", dir=env.store.tmp)), stack)
                stack.callback(shutil.rmtree, backing.scratch, ignore_errors=True)
                runner_mounts, extra_env = _materialize(env, mounts, backing, stage_keys)
                if pipe_name is not None and pipe_body is not None:
                    script = backing.tmpdir("heredoc-") / pipe_name
                    script.write_text(pipe_body)
                    script.chmod(0o755)
                    runner_mounts.append(RunnerMount("/dev/pipes/" + pipe_name, "bind", str(script), readonly=True))
                spec = SandboxSpec(
                    process=ProcessSpec(
                        argv=tuple(argv), env=tuple(sc.scope.run_env(env.build_args)) + tuple(extra_env), cwd=workdir, user=sc.user
                    ),
                    lowers=tuple(env.lowers(below())),
                    upper=upper,
                    hostname=hostname,
                    network=effective,
                    etc_hosts=build_hosts(hostname),
                    mounts=tuple(runner_mounts),
                )
                from runner.sandbox import run_sandbox

                try:
                    status = run_sandbox(spec, on_output=on_output)
                except RuntimeError_ as e:
                    # could not start (125), not executable (126), not found (127): Docker's codes
                    raise StepFailed(
                        f"process {go_quote(' '.join(argv))} did not complete successfully: {e.message}",
                        location=x.where,
                        exit_status=e.exit_code,
                    ) from None
            tail.extend(p.decode("utf-8", "replace") for p in partial.values() if p)
            if status.code != 0:
                what = f"exit code: {status.code}" + (" (killed: out of memory)" if status.oom_killed else "")
                raise StepFailed(
                    f"process {go_quote(' '.join(argv))} did not complete successfully: {what}",
                    location=x.where,
                    exit_status=status.code,
                    output_tail="\n".join(tail),
                )
        return upper

    return Prepared(inputs, created_by, execute)


def build_hosts(hostname: str) -> str:
    """The /etc/hosts of a RUN step: BuildKit's (executor/oci/hosts.go), whatever the network;
    never the host's own entries."""
    return f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def _materialize(
    env: BuildEnv, mounts: list[RunMount], backing: Backing, stage_keys: SourceOf
) -> tuple[list[RunnerMount], list[str]]:
    out: list[RunnerMount] = []
    extra_env: list[str] = []
    for rm in mounts:
        m = rm.options
        if m.type == "tmpfs":
            out.append(RunnerMount(rm.target, "tmpfs", size=m.size_limit))
        elif m.type == "cache":
            seed = None
            if m.from_:
                view = backing.overlay_view(env.lowers(stage_keys(m.from_)[1]()))
                seed = seed_from(view, m.source or "/")
            cid = cache_id(m, env.build_args.get("BUILDKIT_CACHE_MOUNT_NS", ""))
            out.append(RunnerMount(rm.target, "bind", str(backing.cache_dir(m, cid, seed)), readonly=m.readonly))
        elif m.type == "bind":
            if m.from_:
                view = backing.overlay_view(env.lowers(stage_keys(m.from_)[1]()))
                source = resolve_in_root(view, m.source or "/")
                if not source.exists():
                    raise BuildError(f"bind mount source {m.source!r} not found in {m.from_}")
            else:
                source = context_subtree(env.context, m.source or "/", backing.scratch)
                if not m.readonly:
                    source = backing.overlay_view([source]) if source.is_dir() else source
            out.append(RunnerMount(rm.target, "bind", str(source), readonly=m.readonly))
        elif m.type == "secret":
            sid = secret_id(m)
            secret = env.secrets.get(sid)
            value = secret.value(env.environ) if secret is not None else None
            if value is None:
                if m.required:
                    raise BuildError(f"secret {sid} not found: give it with --secret id={sid},src=FILE")
                value = b""
            if m.env:
                extra_env.append(f"{m.env}={value.decode('utf-8', 'replace')}")
                if not m.target:
                    continue
            out.append(RunnerMount(rm.target, "secret", str(backing.secret_file(value, m))))
    return out, extra_env


# ---------------------------------------------------------------------------------- COPY/ADD


def transfer_history(instr: Copy | Add, spec: CopySpec, chown: str, chmod: str) -> str:
    """BuildKit's history line for COPY/ADD (`--from`, `--link`, `--exclude` are not shown)."""
    words = [instr.keyword]
    if isinstance(instr, Copy) and instr.parents:
        words.append("--parents")
    if chown:
        words.append(f"--chown={chown}")
    if chmod:
        words.append(f"--chmod={chmod}")
    words += list(spec.sources) + [f"<<{name}" for name, _ in spec.heredocs] + [spec.dest]
    return " ".join(words) + " # buildkit"


def prepare_copy(
    env: BuildEnv,
    instr: Copy | Add,
    sc: StageConfig,
    x: Expander,
    parent_key: str,
    below: Below,
    source_of: SourceOf,
) -> Prepared:
    """COPY/ADD: the sources' content digests in the key (for the build context), or the
    source stage's key (for --from); copied through an overlay of the parent image."""
    heredocs = tuple(
        (h.name, (expand_heredoc(h.data, x.env) if h.expand else h.data).encode()) for h in instr.heredoc_sources
    )
    checksum = x.word(instr.checksum) if isinstance(instr, Add) and instr.checksum else None
    spec = CopySpec(
        instr.keyword,
        tuple(x.word(s) for s in instr.sources),
        x.word(instr.dest),
        workdir=sc.workdir,
        parents=isinstance(instr, Copy) and instr.parents,
        excludes=tuple(x.word(p) for p in instr.exclude),
        unpack=instr.unpack if isinstance(instr, Add) else False,
        checksum=checksum,
        heredocs=heredocs,
    )
    chown = x.word(instr.chown) if instr.chown else ""
    chmod = x.word(instr.chmod) if instr.chmod else ""
    try:
        mode = parse_chmod(chmod) if chmod else None
    except ChmodError as e:
        raise BuildError(e.message, location=x.where) from None
    from_ = instr.from_ if isinstance(instr, Copy) else None
    if from_:
        from_key, from_layers = source_of(from_)
        digests = [(s, "") for s in spec.sources] + [(f"heredoc:{n}", "") for n, _ in heredocs]
        sources = None
    else:
        from_key, from_layers = "context", lambda: ()
        sources = _located(x.where, lambda: resolve_sources(env.context, spec, download_dir=env.scratch))
        digests = _located(x.where, lambda: digest_sources(sources or [], spec, env.hasher))
    inputs = copy_inputs(
        parent_key,
        op=instr.keyword,
        sources=digests,
        dest=spec.dest,
        workdir=sc.workdir,
        source_of=from_key,
        chown=chown,
        chmod=chmod,
        link=instr.link,
        parents=spec.parents,
        excludes=spec.excludes,
        unpack=bool(spec.unpack) if spec.unpack is not None else spec.is_add,
        epoch=env.epoch,
    )
    created_by = transfer_history(instr, spec, chown, chmod)

    def execute() -> Path:
        with _new_upper(env, "copy-") as upper:
            with ExitStack() as stack:
                layers = below()
                if instr.link and mode is None:
                    # --link: an independent layer; the image is read only for --chown names
                    dst_root = upper
                    passwd_root = _view(env, stack, layers, upper) if chown else upper
                elif not layers:
                    dst_root = passwd_root = upper  # nothing below: write the layer directly
                else:
                    dst_root = passwd_root = stack.enter_context(overlay_rootfs(env.lowers(layers), upper))
                owner = _located(x.where, lambda: chown_identity(chown, passwd_root)) if chown else None
                opts = CopyOptions(chown=owner, chmod=mode, mtime=env.epoch)
                srcs = sources
                if from_:
                    view = _view(env, stack, from_layers(), upper)
                    tree = SourceTree(view, name=f"stage {from_}")
                    srcs = _located(x.where, lambda: resolve_sources(tree, spec, download_dir=env.scratch))
                _located(x.where, lambda: apply_sources(srcs or [], spec, dst_root, opts, scratch_dir=env.scratch))
        return upper

    return Prepared(inputs, created_by, execute)


def _view(env: BuildEnv, stack: ExitStack, layers: Layers, near: Path) -> Path:
    """A read-only use of an image's file system: an overlay with a throwaway upper."""
    scratch = Path(tempfile.mkdtemp(prefix="view-", dir=near.parent))
    stack.callback(shutil.rmtree, scratch, ignore_errors=True)
    upper = scratch / "upper"
    upper.mkdir()
    return stack.enter_context(overlay_rootfs(env.lowers(layers), upper))


def _located(where: str, work: Callable[[], T]) -> T:
    """Run `work`, turning any user-facing error into a BuildError at the instruction."""
    try:
        return work()
    except BuildError:
        raise
    except PybuildError as e:
        raise BuildError(e.message, location=where, hint=e.hint) from None
    except OSError as e:
        raise BuildError(f"{e.strerror}: {e.filename}", location=where) from None


# ------------------------------------------------------------------------------------ WORKDIR


def prepare_workdir(env: BuildEnv, sc: StageConfig, path: str, where: str, parent_key: str, below: Below) -> Prepared:
    """WORKDIR (F81): create the directory (mkdir -p, 0755, owned by USER) as a layer, with
    COPY's rules for the directories it creates (symlinks on the way followed inside the root)."""
    inputs = StepInputs(parent_key, "WORKDIR", {"path": path, "user": sc.user, "epoch": env.epoch})

    def execute() -> Path:
        with _new_upper(env, "workdir-") as upper:
            with ExitStack() as stack:
                layers = below()
                root = upper if not layers else stack.enter_context(overlay_rootfs(env.lowers(layers), upper))
                owner = Identity(0, 0)
                if sc.user:
                    try:
                        user = lookup_user(root, sc.user)
                        owner = Identity(user.uid, user.gid)
                    except RuntimeError_:
                        pass  # BuildKit: a user the image does not know yet makes it root's
                try:
                    mkdir_all(root, path, CopyOptions(chown=owner, mtime=env.epoch))
                except CopyError as e:
                    raise BuildError(f"WORKDIR {path}: {e.message}", location=where) from None
        return upper

    return Prepared(inputs, f"WORKDIR {path}", execute)


__all__ = ["BuildEnv", "Prepared", "StepFailed", "prepare_run", "prepare_copy", "prepare_workdir", "discard"]
