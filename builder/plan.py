"""Which stages a build runs, in which order, on which bases (F43-F48, F75).

- A stage's base is `scratch`, an earlier stage (by name, any case), or an image reference; the
  FROM value is expanded with the global ARGs only, and may not expand to nothing.
- `COPY --from` and `RUN --mount from=` name an earlier stage (by name or index) or an image;
  naming a stage that comes later (or the current one) is an error, as BuildKit has it.
- `--target` ends the build at that stage (default: the last); only the stages it reaches
  through FROM, `COPY --from` and `RUN --mount from=` are built (the rest are skipped entirely).
Everything here is pure: no store, no files.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.buildargs import MetaArgs
from parser import Buildfile, Copy, Run, Stage
from parser.shell import expand_word
from pybuild.errors import BuildError, ParseError

SCRATCH = "scratch"


@dataclass(frozen=True)
class Base:
    """What a stage (or a --from) starts from: `kind` is scratch, stage or image."""

    kind: str
    ref: str = ""  # the image reference (expanded), for kind == "image"
    stage: int = -1  # the stage index, for kind == "stage"


@dataclass(frozen=True)
class StagePlan:
    stage: Stage
    base: Base
    deps: frozenset[int]  # stages read by COPY --from / RUN --mount from=


@dataclass(frozen=True)
class Plan:
    target: int
    order: tuple[int, ...]  # the stages to build, in file order
    stages: dict[int, StagePlan]


def _where(stage: Stage) -> str:
    return str(stage.from_.location)


def stage_ref(buildfile: Buildfile, name: str, current: int) -> int | None:
    """The index of the stage `name` (a name or an index) refers to from stage `current`, or None
    if it is no stage (then it is an image). BuildError if it is the current or a later stage."""
    found = buildfile.stage(name)
    if found is None:
        return None
    if found.index >= current:
        raise BuildError(f"cannot copy from stage {name!r}: it needs to be defined before the current stage")
    return found.index


def base_of(buildfile: Buildfile, stage: Stage, meta: MetaArgs) -> Base:
    """The expanded base of `stage`: scratch, an earlier stage, or an image reference."""
    try:
        name = expand_word(stage.base, meta.env(), buildfile.escape)
    except ParseError as e:
        raise BuildError(e.reason, location=_where(stage)) from None
    if not name:
        raise BuildError(f"base name ({stage.base}) should not be blank", location=_where(stage))
    if name.lower() == SCRATCH:
        return Base(SCRATCH)
    wanted = name.lower()
    earlier = [s.index for s in buildfile.stages[: stage.index] if s.name == wanted]
    if earlier:
        return Base("stage", stage=earlier[-1])  # a duplicate name: the later stage wins
    return Base("image", ref=name)


def _mount_from(run: Run) -> list[str]:
    out = []
    for spec in run.mounts:
        for key, value in spec.fields:
            if key == "from" and value:
                out.append(value)
    return out


def _deps(buildfile: Buildfile, stage: Stage) -> frozenset[int]:
    deps: set[int] = set()
    for instruction in stage.instructions:
        refs: list[str] = []
        if isinstance(instruction, Copy) and instruction.from_:
            refs.append(instruction.from_)
        elif isinstance(instruction, Run):
            refs.extend(_mount_from(instruction))
        for ref in refs:
            if "$" in ref:
                raise BuildError("variable expansion is not supported for --from", location=str(instruction.location))
            try:
                index = stage_ref(buildfile, ref, stage.index)
            except BuildError as e:
                raise BuildError(e.message, location=str(instruction.location)) from None
            if index is not None:
                deps.add(index)
    return frozenset(deps)


def plan_build(buildfile: Buildfile, meta: MetaArgs, target: str | None = None) -> Plan:
    """The stages to build for `target` (a stage name or index; None: the last stage)."""
    if not buildfile.stages:
        raise BuildError("the Buildfile has no stages (no FROM instruction)")
    if target:
        found = buildfile.stage(target)
        if found is None:
            raise BuildError(f"target stage {target!r} could not be found")
        target_index = found.index
    else:
        target_index = len(buildfile.stages) - 1
    plans: dict[int, StagePlan] = {}
    needed: set[int] = set()
    todo = [target_index]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        stage = buildfile.stages[index]
        plan = StagePlan(stage, base_of(buildfile, stage, meta), _deps(buildfile, stage))
        plans[index] = plan
        if plan.base.kind == "stage":
            todo.append(plan.base.stage)
        todo.extend(plan.deps)
    order = tuple(sorted(needed))
    return Plan(target_index, order, plans)
