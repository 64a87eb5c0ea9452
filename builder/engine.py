"""The build: a parsed Buildfile and a context in, a tagged image in the store out.

For every stage the target needs (plan.py), in file order: resolve the base (an image in the
store, scratch, or an earlier stage's result), run the base's ONBUILD triggers, then every
instruction. Each instruction is a step with a cache key (cachekey.py) chained from the previous
step's key; a key found in the store's build cache reuses that step's image without running it.
Otherwise the step runs (steps.py for RUN/COPY/ADD/WORKDIR, imageconfig.py for the rest) and
its image is written, then cached. So a fully cached rebuild reads no layer and runs nothing:
it hashes the COPY sources (with the stat cache) and looks keys up.

Atomicity: images are written objects-first by the store, a step's image is cached only once
written, and tags are set only after the whole build succeeded. A failed step leaves the cached
steps before it (a later build resumes there), no tag, and nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.buildargs import Scope, platform_args, resolve_meta_args, source_date_epoch
from builder.cachekey import SCRATCH, StepInputs, explain, meta_inputs
from builder.context import SourceTree
from builder.contenthash import Hasher, StatCache, statcache_path
from builder.ignore import load_ignore
from builder.imageconfig import HISTORY_COMMENT, METADATA, StageConfig, apply_metadata, expander, workdir_path
from builder.plan import Base, Plan, StagePlan, plan_build, stage_ref
from builder.progress import Reporter, Step
from builder.runmounts import Secret
from builder.squash import squash_image
from builder.steps import BuildEnv, Prepared, prepare_copy, prepare_run, prepare_workdir
from layerstore.atomic import atomic_write
from layerstore.images import Image, rfc3339
from layerstore.oci import ContainerConfig, HistoryEntry
from layerstore.store import Store
from parser import Add, Buildfile, Copy, Instruction, Onbuild, Run, Workdir, parse_buildfile, parse_instructions
from pybuild.errors import BuildError, NotFound, ParseError, PybuildError

log = logging.getLogger(__name__)


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
    explain_cache: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class StageState:
    """Where a stage is: the key and image of its last step, and its config and variables."""

    index: int
    label: str
    key: str
    digest: str | None
    sc: StageConfig
    total: int
    position: int = 1
    base_digest: str | None = None  # the image the stage started from (for --squash)


def _stage_total(plan: StagePlan) -> int:
    return 1 + sum(1 for i in plan.stage.instructions if isinstance(i, (Run, Copy, Add, Workdir)))


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
        internal = self._internal(f"[internal] load build definition from {opts.buildfile_name}")
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
        self._load_explanations()
        try:
            self.env = BuildEnv(
                store=self.store,
                context=context,
                hashers={},
                build_args=opts.build_args,
                secrets=opts.secrets,
                environ=opts.environ,
                network=opts.network,
                epoch=epoch,
                scratch=scratch,
            )
            self.env.hashers[id(context)] = Hasher(context, cache)
            for index in plan.order:
                self.results[index] = self._build_stage(plan, plan.stages[index])
            final = self.results[plan.target]
            if opts.labels:
                final = self._labels(final, dict(opts.labels))
            image = self._materialize(final)
            if opts.squash:
                step = self._start("[squash] merging this build's layers into one")
                image = squash_image(self.store, image, final.base_digest, epoch=epoch)
                self.progress.done(step)
        finally:
            cache.save()
            self._save_explanations()
            shutil.rmtree(scratch, ignore_errors=True)
        step = self._start("exporting to image")
        self.progress.info(f"#{step.number} writing image {image.id} done")
        for tag in opts.tags:
            self.store.tag(image, tag, message=f"build {opts.buildfile_name}")
            self.progress.info(f"#{step.number} naming to {tag} done")
        self.progress.done(step)
        return image

    def _internal(self, name: str) -> Step:
        return self._start(name)

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
            state.sc = replace(state.sc, config=replace(state.sc.config, on_build=None))
            try:
                parsed = parse_instructions("\n".join(triggers), file=f"ONBUILD of {sp.stage.base}")
            except ParseError as e:
                raise BuildError(f"cannot run ONBUILD triggers: {e.message}", location=str(sp.stage.location)) from None
            for k, trigger in enumerate(parsed):
                state = self._dispatch(state, trigger, f"{sp.stage.index}/0.{k}", onbuild=True)
        for k, instruction in enumerate(sp.stage.instructions, start=1):
            state = self._dispatch(state, instruction, f"{sp.stage.index}/{k}")
        return state

    def _from(self, sp: StagePlan) -> StageState:
        base: Base = sp.base
        label = self._label(sp)
        total = _stage_total(sp)
        probe = StageState(sp.stage.index, label, SCRATCH, None, StageConfig(ContainerConfig(), Scope()), total)
        if base.kind == "stage":
            prior = self.results[base.stage]
            shown = f"FROM {prior.label or prior.index}"
            step = self._start(self._display(probe, shown))
            self.progress.done(step)
            return replace(prior, index=sp.stage.index, label=label, total=total, position=1)
        if base.kind == "scratch":
            sc = StageConfig(ContainerConfig(), Scope()).with_scope(Scope.from_image_env([]))
            step = self._start(self._display(probe, "FROM scratch"))
            self.progress.done(step)
            return StageState(sp.stage.index, label, SCRATCH, None, sc, total)
        image = self._base_image(base.ref, str(sp.stage.location))
        step = Step(self.counter + 1, self._display(probe, f"FROM {base.ref}@{image.digest}"))
        self.counter += 1
        self.progress.cached(step)
        config = image.config.config
        sc = StageConfig(config, Scope()).with_scope(Scope.from_image_env(config.env or ()))
        sc = replace(sc, author=image.config.author)
        return StageState(sp.stage.index, label, image.digest, image.digest, sc, total, base_digest=image.digest)

    def _base_image(self, ref: str, where: str) -> Image:
        try:
            return self.store.resolve(ref)
        except NotFound:
            pass
        pulled = pull_base(self.store, ref)
        if pulled is not None:
            return pulled
        raise BuildError(
            f"base image {ref} is not in the store",
            location=where,
            hint=f"get it with 'pybuild pull {ref}', 'pybuild load -i FILE', or 'pybuild bootstrap busybox'",
        )

    def _source(self, state: StageState, name: str) -> tuple[str, Image | None]:
        """What `COPY --from`/`--mount from=` names: (its key, its image) for a stage or image."""
        assert self.buildfile is not None
        index = stage_ref(self.buildfile, name, state.index)
        if index is not None:
            prior = self.results[index]
            return prior.key, self.env.image(prior.digest)
        image = self._base_image(name, "")
        return image.digest, image

    # ------------------------------------------------------------------------------ steps

    def _dispatch(self, state: StageState, instruction: Instruction, pos: str, *, onbuild: bool = False) -> StageState:
        assert self.buildfile is not None
        escape = self.buildfile.escape
        if isinstance(instruction, Onbuild) and onbuild:
            raise BuildError("ONBUILD ONBUILD is not allowed", location=str(instruction.location))
        if isinstance(instruction, METADATA):
            sc, created_by = apply_metadata(instruction, state.sc, escape=escape, build_args=self.options.build_args, meta=self.meta)
            inputs = meta_inputs(state.key, op=instruction.keyword, value=created_by, epoch=self.epoch)
            return self._config_step(state, sc, created_by, inputs, pos)
        x = expander(state.sc, instruction, escape)
        if isinstance(instruction, Workdir):
            sc, created_by = apply_metadata(instruction, state.sc, escape=escape)
            state = replace(state, position=state.position + 1)
            if sc.workdir == "/":
                inputs = meta_inputs(state.key, op="WORKDIR", value=created_by, epoch=self.epoch)
                return self._config_step(state, sc, created_by, inputs, pos)
            prepared = prepare_workdir(self.env, sc, sc.workdir, x.where, state.key, state.digest)
            return self._layer_step(state, sc, prepared, self._display(state, created_by), pos)
        state = replace(state, position=state.position + 1)
        shown = self._display(state, (("ONBUILD " if onbuild else "") + instruction.original.strip())[:200])
        if isinstance(instruction, Run):
            prepared = prepare_run(self.env, instruction, state.sc, x, state.key, state.digest, lambda n: self._source(state, n))
            return self._layer_step(state, state.sc, prepared, shown, pos)
        if isinstance(instruction, (Copy, Add)):
            prepared = prepare_copy(self.env, instruction, state.sc, x, state.key, state.digest, lambda n: self._source(state, n))
            return self._layer_step(state, state.sc, prepared, shown, pos)
        raise BuildError(f"{instruction.keyword} cannot be used here", location=str(instruction.location))

    def _lookup(self, key: str) -> str | None:
        return None if self.options.no_cache else self.store.cache.get(key)

    def _created(self) -> str:
        return rfc3339(self.epoch) if self.epoch is not None else rfc3339()

    def _config_step(self, state: StageState, sc: StageConfig, created_by: str, inputs: StepInputs, pos: str) -> StageState:
        """A metadata step: a new image with the same layers, a new config and history entry."""
        key = inputs.key()
        self.current[pos] = inputs
        hit = self._lookup(key)
        if hit is None:
            created = self._created()
            image = self.store.write_image(
                parent=self.env.image(state.digest),
                config=sc.config,
                history=[HistoryEntry(created_by=created_by, created=created, comment=HISTORY_COMMENT, empty_layer=True)],
                created=created,
                instruction=created_by,
                cache_key=key,
            )
            self.store.cache.put(key, image.digest)
            hit = image.digest
        return replace(state, key=key, digest=hit, sc=sc)

    def _layer_step(self, state: StageState, sc: StageConfig, prepared: Prepared, shown: str, pos: str) -> StageState:
        key = prepared.inputs.key()
        self.current[pos] = prepared.inputs
        hit = self._lookup(key)
        if hit is not None:
            self.counter += 1
            self.progress.cached(Step(self.counter, shown))
            return replace(state, key=key, digest=hit, sc=sc)
        reasons = ["--no-cache"] if self.options.no_cache else explain(self.previous.get(pos), prepared.inputs)
        step = self._start(shown, reasons)
        self.env.on_output = lambda stream, data: self.progress.output(step, stream, data)
        try:
            upper = prepared.execute()
            self.progress.phase(step, "committing", _tree_size(upper))
            created = self._created()
            image = self.store.commit(
                upper,
                parent=self.env.image(state.digest),
                created_by=prepared.created_by,
                config=sc.config,
                comment=HISTORY_COMMENT,
                created=created,
                cache_key=key,
                source_date_epoch=self.epoch,
            )
        except PybuildError as e:
            self.progress.error(step, e.message)
            raise
        finally:
            self.env.on_output = lambda stream, data: None
        self.store.cache.put(key, image.digest)
        self.env.images[image.digest] = image
        self.progress.done(step)
        return replace(state, key=key, digest=image.digest, sc=sc)

    def _labels(self, state: StageState, labels: dict[str, str]) -> StageState:
        """--label: applied to the final image as a last metadata step."""
        merged = dict(state.sc.config.labels or {})
        merged.update(labels)
        sc = replace(state.sc, config=replace(state.sc.config, labels=merged))
        created_by = "LABEL " + " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        inputs = meta_inputs(state.key, op="LABEL", value=created_by, epoch=self.epoch)
        return self._config_step(state, sc, created_by, inputs, "labels")

    def _materialize(self, state: StageState) -> Image:
        """The final image of a stage; a stage with nothing but `FROM scratch` gets an empty image."""
        if state.digest is None:
            inputs = meta_inputs(state.key, op="FROM", value="FROM scratch", epoch=self.epoch)
            state = self._config_step(state, state.sc, "FROM scratch", inputs, "scratch")
        image = self.env.image(state.digest)
        assert image is not None
        return image

    # ------------------------------------------------------------------------------ explanations

    def _explain_path(self) -> Path:
        opts = self.options
        ident = f"{os.path.abspath(opts.context)}\0{opts.buildfile_path or '-'}\0{opts.target or ''}"
        return self.store.root / "cache" / "explain" / (hashlib.sha256(ident.encode()).hexdigest() + ".json")

    def _load_explanations(self) -> None:
        try:
            doc = json.loads(self._explain_path().read_bytes())
            self.previous = {pos: StepInputs.from_json(d) for pos, d in doc.get("steps", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.previous = {}

    def _save_explanations(self) -> None:
        if not self.current or self.current == self.previous:
            return
        steps = {**{p: i.to_json() for p, i in self.previous.items()}, **{p: i.to_json() for p, i in self.current.items()}}
        path = self._explain_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(path, json.dumps({"v": 1, "steps": steps}, sort_keys=True).encode())
        except OSError as e:
            log.debug("cannot save cache explanations: %s", e)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def pull_base(store: Store, ref: str) -> Image | None:
    """Pull a base image that is not in the store, when the transfer area provides a pull
    (`layerstore.transfer.pull`); None when it cannot (then the build says how to get it)."""
    try:
        from layerstore import transfer  # type: ignore[attr-defined]
    except ImportError:
        return None
    pull = getattr(transfer, "pull", None)
    if pull is None:
        return None
    image = pull(store, ref)
    return image if isinstance(image, Image) else None


def build(store: Store, options: BuildOptions, progress: Reporter) -> Image:
    """Build and tag; see `Builder`."""
    return Builder(store, options, progress).build()
