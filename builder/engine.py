"""The build: a parsed Buildfile and a context in, a tagged image in the store out.

For every stage the target needs (plan.py), in file order: resolve the base (an image in the
store, scratch, or an earlier stage's result), run the base's ONBUILD triggers, then every
instruction. Two chains of cache keys (cachekey.py) run through a stage, as BuildKit's two
outputs do:
- the *file-system* chain: FROM, RUN, COPY, ADD and WORKDIR, each keyed by the previous one and
  by what the step sees (a RUN its environment, user, directory; a COPY its sources' content).
  Metadata instructions do not touch it, so a changed LABEL, or an ARG no step uses, reruns
  nothing. A key found in the build cache gives the step's layer (and its history entry) from
  the image cached under it, without running the step;
- the *image* chain: every instruction, metadata included, and the config after it. Every
  instruction's result is an image, cached under its image key, whose commit parent is the
  previous instruction's image (the first one's is the stage's base): `pybuild log` reads a
  build step by step, as `git log` reads commits, and `pybuild diff IMAGE` shows what one step
  changed. A metadata step's image costs two small JSON blobs; on a fully cached rebuild every
  image is found by its key and none is read but the last, which has the very same digest.

Atomicity: the store writes objects before references, a key is cached only once its image is
written, and tags are set only after the whole build succeeded. A failed step leaves the cached
steps before it (a later build resumes there), no tag, and nothing half-written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder import lastbuild
from builder.buildargs import Scope, platform_args, resolve_meta_args, source_date_epoch
from builder.cachekey import SCRATCH, StepInputs, explain
from builder.contenthash import Hasher, StatCache, statcache_path
from builder.context import SourceTree
from builder.ignore import load_ignore
from builder.imageconfig import HISTORY_COMMENT, METADATA, StageConfig, apply_metadata, expander
from builder.plan import Base, Plan, StagePlan, plan_build, stage_ref
from builder.progress import Reporter, Step
from builder.runmounts import Secret
from builder.steps import BuildEnv, Prepared, discard, prepare_copy, prepare_run, prepare_workdir
from layerstore.images import Image, rfc3339
from layerstore.layers import Layer
from layerstore.oci import ContainerConfig, HistoryEntry
from layerstore.store import Store
from parser import Add, Buildfile, Copy, Instruction, Onbuild, Run, Workdir, parse_buildfile, parse_instructions
from pybuild.errors import BuildError, NotFound, ParseError, PybuildError, RegistryError, StoreError


@dataclass(frozen=True)
class BuildOptions:
    """Everything `pybuild build` passes to the builder."""

    context: Path
    buildfile_text: str
    buildfile_name: str = "Buildfile"  # what error locations say (`Buildfile:12`)
    buildfile_path: Path | None = None  # for `<Buildfile>.dockerignore`; None with `-f -`
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = "default"
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    squash: bool = False
    no_cache_filter: tuple[str, ...] = ()  # stages (names or indexes) to build without the cache
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True)
class StageState:
    """Where a stage is: the image its last step ended with (`head`, a manifest digest, read
    only when a later step needs it), the two key chains, and its config and variables."""

    index: int
    label: str
    total: int
    head: str | None  # the image after the last step (the base's digest at FROM; None: scratch)
    fs_key: str
    image_key: str
    sc: StageConfig
    position: int = 1
    origin: Image | None = None  # the image the chain of stages started from (for --squash)

    def below(self, env: BuildEnv) -> tuple[Layer, ...]:
        """Every layer under the next step, bottom first."""
        return env.image(self.head).layers if self.head else ()


def _numbered(instructions: Sequence[Instruction]) -> int:
    """How many of `instructions` the progress numbers `[n/total]` (the file-system steps)."""
    return sum(1 for i in instructions if isinstance(i, (Run, Copy, Add, Workdir)))


class Builder:
    """One build. `build()` returns the final image (tagged if tags were given)."""

    def __init__(self, store: Store, options: BuildOptions, progress: Reporter) -> None:
        self.store = store
        self.options = options
        self.progress = progress
        self.counter = 0
        self.results: dict[int, StageState] = {}
        self.buildfile: Buildfile | None = None
        self.previous: dict[str, StepInputs] = {}
        self.current: dict[str, StepInputs] = {}

    # ------------------------------------------------------------------------------ the build

    def build(self) -> Image:
        opts = self.options
        internal = self._start(f"[internal] load build definition from {opts.buildfile_name}")
        buildfile = parse_buildfile(opts.buildfile_text, file=opts.buildfile_name)
        self.progress.done(internal)
        for warning in buildfile.warnings:
            self.progress.info(f"warning: {opts.buildfile_name}:{warning.line}: {warning.rule}: {warning.message}")
        self.buildfile = buildfile
        target_name = opts.target or (buildfile.stages[-1].name if buildfile.stages else "") or ""
        meta = resolve_meta_args(
            [(a.name, a.default) for arg in buildfile.global_args for a in arg.args],
            opts.build_args,
            builtins=platform_args(target_name),
            escape=buildfile.escape,
        )
        self.meta = meta
        epoch = source_date_epoch(meta, opts.build_args, opts.environ)
        self.epoch = epoch
        plan = plan_build(buildfile, meta, opts.target)
        ignore = load_ignore(opts.context, opts.buildfile_path)
        context = SourceTree(opts.context, ignore=ignore, name="build context", reset_owner=True)
        cache = StatCache(statcache_path(self.store.root, opts.context))
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=self.store.tmp))
        explain_path = lastbuild.record_path(self.store.root, opts.context, opts.buildfile_path, opts.target)
        self.previous = lastbuild.load(explain_path)
        try:
            self.env = BuildEnv(
                store=self.store,
                context=context,
                hashers={id(context): Hasher(context, cache)},
                build_args=opts.build_args,
                secrets=opts.secrets,
                environ=opts.environ,
                network=opts.network,
                epoch=epoch,
                scratch=scratch,
            )
            for index in plan.order:
                self.results[index] = self._build_stage(plan, plan.stages[index])
            final = self.results[plan.target]
            if opts.labels:
                final = self._labels(final, dict(opts.labels))
            image = self._stage_image(final)
            if opts.squash:
                step = self._start("[squash] merging this build's layers into one")
                from builder.squash import squash_image

                origin = final.origin
                key = hashlib.sha256(f"squash\0{image.digest}\0{origin.digest if origin else ''}\0{epoch}".encode()).hexdigest()
                hit = self._lookup(key)
                if hit is not None:
                    image = self.env.image(hit)
                else:
                    image = squash_image(self.store, image, origin.digest if origin else None, epoch=epoch)
                    self.store.cache.put(key, image.digest)
                self.progress.done(step)
        finally:
            cache.save()
            lastbuild.save(explain_path, self.previous, self.current)
            shutil.rmtree(scratch, ignore_errors=True)
        step = self._start("exporting to image")
        self.progress.info(f"#{step.number} writing image {image.id} done")
        for tag in opts.tags:
            if self.store.tags.get(tag) != image.digest:
                self.store.tag(image, tag, message=f"build {opts.buildfile_name}")
            self.progress.info(f"#{step.number} naming to {tag} done")
        self.progress.done(step)
        return image

    def _start(self, name: str, reasons: list[str] | None = None) -> Step:
        self.counter += 1
        step = Step(self.counter, name, reasons=reasons or [])
        self.progress.start(step)
        return step

    # ------------------------------------------------------------------------------ stages

    def _label(self, plan: StagePlan) -> str:
        if plan.stage.name:
            return plan.stage.name
        assert self.buildfile is not None
        return f"stage-{plan.stage.index}" if len(self.buildfile.stages) > 1 else ""

    def _display(self, state: StageState, text: str) -> str:
        prefix = f"{state.label} " if state.label else ""
        return f"[{prefix}{state.position}/{state.total}] {text}"

    def _build_stage(self, plan: Plan, sp: StagePlan) -> StageState:
        state = self._from(sp)
        triggers = state.sc.config.on_build
        if triggers:
            state = replace(state, sc=replace(state.sc, config=replace(state.sc.config, on_build=None)))
            try:
                parsed = parse_instructions("\n".join(triggers), file=f"ONBUILD of {sp.stage.base}")
            except ParseError as e:
                raise BuildError(f"cannot run ONBUILD triggers: {e.message}", location=str(sp.stage.location)) from None
            state = replace(state, total=state.total + _numbered(parsed))
            for k, trigger in enumerate(parsed):
                state = self._dispatch(state, trigger, f"{sp.stage.index}/0.{k}", onbuild=True)
        for k, instruction in enumerate(sp.stage.instructions, start=1):
            state = self._dispatch(state, instruction, f"{sp.stage.index}/{k}")
        return state

    def _result(self, index: int) -> StageState:
        """A stage's result, built first (with what it needs) when the plan left it out: an
        ONBUILD trigger of a base image may name a stage of this file that no instruction does
        (`ONBUILD COPY --from=builder ...`, resolved in the child's Buildfile as BuildKit does)."""
        if index not in self.results:
            assert self.buildfile is not None
            needed = plan_build(self.buildfile, self.meta, str(index))
            for i in needed.order:
                if i not in self.results:
                    self.results[i] = self._build_stage(needed, needed.stages[i])
        return self.results[index]

    def _from(self, sp: StagePlan) -> StageState:
        self._check_platform(sp)
        base: Base = sp.base
        label = self._label(sp)
        total = 1 + _numbered(sp.stage.instructions)  # FROM, then the file-system steps
        probe = StageState(sp.stage.index, label, total, None, SCRATCH, SCRATCH, StageConfig(ContainerConfig(), Scope()))
        if base.kind == "stage":
            prior = self._result(base.stage)
            step = self._start(self._display(probe, f"FROM {prior.label or prior.index}"))
            self.progress.done(step)
            image = self._stage_image(prior)
            sc = replace(prior.sc, cmd_set=False)  # CMD set in the parent stage counts as inherited
            return StageState(sp.stage.index, label, total, image.digest, prior.fs_key, image.digest, sc, origin=prior.origin)
        if base.kind == "scratch":
            sc = StageConfig(ContainerConfig(), Scope()).with_scope(Scope.from_image_env([]))
            step = self._start(self._display(probe, "FROM scratch"))
            self.progress.done(step)
            return StageState(sp.stage.index, label, total, None, SCRATCH, SCRATCH, sc)
        image = self._base_image(base.ref, str(sp.stage.location))
        self.counter += 1
        self.progress.cached(Step(self.counter, self._display(probe, f"FROM {base.ref}" + ("" if "@" in base.ref else f"@{image.digest}"))))
        config = image.config.config
        sc = StageConfig(config, Scope()).with_scope(Scope.from_image_env(config.env or ()))
        sc = replace(sc, author=image.config.author)
        return StageState(sp.stage.index, label, total, image.digest, image.digest, image.digest, sc, origin=image)

    def _check_platform(self, sp: StagePlan) -> None:
        """FROM --platform may only name the platform pybuild builds for (F50)."""
        if not sp.stage.platform:
            return
        assert self.buildfile is not None
        wanted = expander(
            StageConfig(ContainerConfig(), Scope(env=tuple(self.meta.env().items()))), sp.stage.from_, self.buildfile.escape
        ).word(sp.stage.platform)
        here = platform_args()["TARGETPLATFORM"]
        if wanted.split("/")[:2] != here.split("/")[:2]:
            raise BuildError(
                f"FROM --platform={wanted}: pybuild builds only for this machine's platform ({here})",
                location=str(sp.stage.location),
            )

    def _base_image(self, ref: str, where: str) -> Image:
        try:
            return self.store.resolve(ref)
        except NotFound:
            pass
        step = self._start(f"[internal] pull {ref}")
        try:
            image = pull_base(self.store, ref, lambda message: self.progress.output(step, "stdout", (message + "\n").encode()))
        except (RegistryError, NotFound, StoreError) as e:
            self.progress.error(step, e.message)
            raise BuildError(
                f"base image {ref} is not in the store and cannot be pulled: {e.message}",
                location=where or None,
                hint=f"get it with 'pybuild pull {ref}', 'pybuild load -i FILE', or 'pybuild bootstrap busybox'",
            ) from None
        self.progress.done(step)
        return image

    def _source(self, state: StageState, name: str) -> tuple[str, Callable[[], tuple[Layer, ...]]]:
        """What `COPY --from`/`--mount from=` names: (its key, its layers) for a stage or image."""
        assert self.buildfile is not None
        index = stage_ref(self.buildfile, name, state.index)
        if index is not None:
            prior = self._result(index)
            return prior.fs_key, lambda: prior.below(self.env)
        image = self._base_image(name, "")
        return image.digest, lambda: image.layers

    # ------------------------------------------------------------------------------ steps

    def _dispatch(self, state: StageState, instruction: Instruction, pos: str, *, onbuild: bool = False) -> StageState:
        assert self.buildfile is not None
        escape = self.buildfile.escape
        if isinstance(instruction, Onbuild) and onbuild:
            raise BuildError("ONBUILD ONBUILD is not allowed", location=str(instruction.location))
        if isinstance(instruction, METADATA):
            sc, created_by = apply_metadata(instruction, state.sc, escape=escape, build_args=self.options.build_args, meta=self.meta)
            return self._config_step(state, sc, created_by)
        x = expander(state.sc, instruction, escape)
        if isinstance(instruction, Workdir):
            sc, created_by = apply_metadata(instruction, state.sc, escape=escape)
            state = replace(state, position=state.position + 1)
            if sc.workdir == "/":
                return self._config_step(state, sc, created_by)
            prepared = prepare_workdir(self.env, sc, sc.workdir, x.where, state.fs_key, lambda: state.below(self.env))
            return self._layer_step(state, sc, prepared, self._display(state, created_by), pos)
        state = replace(state, position=state.position + 1)
        shown = self._display(state, (("ONBUILD " if onbuild else "") + instruction.original.strip())[:200])
        source_of = lambda name: self._source(state, name)  # noqa: E731
        if not isinstance(instruction, (Run, Copy, Add)):
            raise BuildError(f"{instruction.keyword} cannot be used here", location=str(instruction.location))
        below = lambda: state.below(self.env)  # noqa: E731
        try:
            if isinstance(instruction, Run):
                prepared = prepare_run(self.env, instruction, state.sc, x, state.fs_key, below, source_of)
            else:
                prepared = prepare_copy(self.env, instruction, state.sc, x, state.fs_key, below, source_of)
        except PybuildError as e:
            # a source that is missing, a bad --chmod, ...: shown as the step that failed
            self.progress.error(self._start(shown), e.message)
            raise
        return self._layer_step(state, state.sc, prepared, shown, pos)

    def _lookup(self, key: str, state: StageState | None = None) -> str | None:
        return None if self._no_cache(state) else self.store.cache.get(key)

    def _no_cache(self, state: StageState | None) -> bool:
        if self.options.no_cache:
            return True
        if state is None or not self.options.no_cache_filter:
            return False
        assert self.buildfile is not None
        stage = self.buildfile.stages[state.index]
        return any(self.buildfile.stage(f) is stage for f in self.options.no_cache_filter)

    def _created(self) -> str:
        return rfc3339(self.epoch) if self.epoch is not None else rfc3339()

    def _config_step(self, state: StageState, sc: StageConfig, created_by: str) -> StageState:
        """A metadata step: the previous step's image with a new config and one empty history
        entry, found in the cache under its image key or written (JSON only)."""
        image_key = _chain(state.image_key, "config", _config_text(created_by, sc), self.epoch)
        head = self._lookup(_key_hex(image_key), state)
        if head is None:
            entry = HistoryEntry(created_by=created_by, created=self._created(), comment=HISTORY_COMMENT, empty_layer=True)
            head = self._write_step(state, sc, image_key, None, entry).digest
        return replace(state, sc=sc, head=head, image_key=image_key)

    def _layer_step(self, state: StageState, sc: StageConfig, prepared: Prepared, shown: str, pos: str) -> StageState:
        """A step that adds a layer. Its image is found under its image key (the whole image
        chain so far); else its layer is found under its file-system key (only what the step
        sees: a changed LABEL before it reruns nothing) and a new image is written on the
        previous step's; else the step runs."""
        key = prepared.inputs.key()
        self.current[pos] = prepared.inputs
        image_key = _chain(state.image_key, "layer", _config_text(key, sc), None)
        head = self._lookup(_key_hex(image_key), state)
        if head is None:
            found = self._lookup(key, state)
            if found is not None:
                layer, entry = self._cached_layer(found)
                head = self._write_step(state, sc, image_key, layer, entry).digest
            else:
                head = self._run_layer_step(state, sc, prepared, key, image_key, shown, pos).digest
                return replace(state, sc=sc, head=head, fs_key=key, image_key=image_key)
        self.counter += 1
        self.progress.cached(Step(self.counter, shown))
        return replace(state, sc=sc, head=head, fs_key=key, image_key=image_key)

    def _cached_layer(self, digest: str) -> tuple[Layer, HistoryEntry]:
        """The layer a cached step image added, and its history entry."""
        image = self.env.image(digest)
        entries = [h for h in image.history if not h.empty_layer]
        if not image.layers or not entries:
            raise BuildError(f"cached step image {digest} has no layer; remove it with 'pybuild gc --prune-cache'")
        return image.layers[-1], entries[-1]

    def _run_layer_step(
        self, state: StageState, sc: StageConfig, prepared: Prepared, key: str, image_key: str, shown: str, pos: str
    ) -> Image:
        reasons = ["--no-cache"] if self._no_cache(state) else explain(self.previous.get(pos), prepared.inputs)
        step = self._start(shown, reasons)
        self.env.on_output = lambda stream, data: self.progress.output(step, stream, data)
        try:
            upper = prepared.execute()
            try:
                self.progress.phase(step, "committing", _tree_size(upper))
                layer = self.store.layers.commit_dir(upper, source_date_epoch=self.epoch, consume=True)
            finally:
                discard(upper)  # the commit moved the upper away; this removes what is left
            entry = HistoryEntry(created_by=prepared.created_by, created=self._created(), comment=HISTORY_COMMENT)
            image = self._write_step(state, sc, image_key, layer, entry)
        except PybuildError as e:
            self.progress.error(step, e.message)
            raise
        finally:
            self.env.on_output = lambda stream, data: None
        self.store.cache.put(key, image.digest)  # what a later build finds the layer under
        self.progress.done(step)
        return image

    def _write_step(self, state: StageState, sc: StageConfig, image_key: str, layer: Layer | None, entry: HistoryEntry) -> Image:
        """The image of one step: the previous step's image (its commit parent) plus `layer` (if
        any), `entry` and the config after the step; cached under `image_key`. Objects before
        references: the cache entry is written after the image."""
        image = self.store.write_image(
            parent=self.env.image(state.head) if state.head else None,
            layers=[layer] if layer is not None else [],
            config=sc.config,
            history=[entry],
            created=entry.created,
            instruction=entry.created_by,
            cache_key=_key_hex(image_key),
            author=sc.author,
        )
        self.store.cache.put(_key_hex(image_key), image.digest)
        self.env.images[image.digest] = image
        return image

    def _stage_image(self, state: StageState) -> Image:
        """The image a stage ends with: its last step's (for `FROM image` alone, that image; for
        `FROM scratch` alone, an empty image with one `FROM scratch` entry)."""
        if state.head is not None:
            return self.env.image(state.head)
        hit = self._lookup(_key_hex(state.image_key), state)
        if hit is not None:
            return self.env.image(hit)
        entry = HistoryEntry(created_by="FROM scratch", created=self._created(), empty_layer=True)
        return self._write_step(state, state.sc, state.image_key, None, entry)

    def _labels(self, state: StageState, labels: dict[str, str]) -> StageState:
        """--label: applied to the final image as a last metadata step."""
        merged = dict(state.sc.config.labels or {})
        merged.update(labels)
        sc = replace(state.sc, config=replace(state.sc.config, labels=merged))
        created_by = "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return self._config_step(state, sc, created_by)


def _chain(previous: str, kind: str, value: str, epoch: int | None) -> str:
    """The next key of the image chain."""
    doc = json.dumps([previous, kind, value, epoch], separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(doc.encode("utf-8", "surrogateescape")).hexdigest()


def _config_text(value: str, sc: StageConfig) -> str:
    """What a step's image key adds to the chain: the step (its history text or file-system key)
    and the config after it, as a history text does not say everything the config holds
    (HEALTHCHECK's options, for one)."""
    doc = {"step": value, "config": sc.config.to_json(), "author": sc.author}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _key_hex(key: str) -> str:
    """A chain key as the build cache stores keys (64 hex); base digests are hashed too."""
    hex_ = key.removeprefix("sha256:")
    return hex_ if len(hex_) == 64 else hashlib.sha256(key.encode()).hexdigest()


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def pull_base(store: Store, ref: str, progress: Callable[[str], None]) -> Image:
    """Pull a base image that is not in the store (the transfer area's registry client)."""
    from layerstore.transfer_registry import pull_image

    return pull_image(store, ref, progress=progress)


def build(store: Store, options: BuildOptions, progress: Reporter) -> Image:
    """Build and tag; see `Builder`."""
    return Builder(store, options, progress).build()
