"""Build-cache keys: pure functions from a step's inputs to a sha256 (DESIGN.md section 1).

A step's key is the sha256 of a canonical JSON document holding:
- `parent`: the previous step's key (the first step of a stage: the base image's manifest
  digest, `scratch`, or the key of the stage it is built FROM);
- `op` and the instruction after variable expansion, in typed fields;
- what the step sees that the text does not say: for RUN the environment (ENV plus declared
  ARGs with values, never undeclared build args or proxies), user, working directory, shell,
  network and mounts; for COPY/ADD the working directory, the content digests of the sources
  (content, mode, ownership and link targets, never times: contenthash.py) and their names;
- `epoch`: SOURCE_DATE_EPOCH, which changes what is written.
Secrets never enter a key: a secret mount is keyed by its id and target only.

Keys are versioned (`KEY_VERSION`): changing what goes into them changes every key, so an old
cache is never misread. `explain` names which inputs differ between two steps, for
`--explain-cache` and the plain progress output.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KEY_VERSION = "pybuild-cache-v1"
SCRATCH = "scratch"

Json = Any  # a JSON-able value: str, int, bool, None, list, dict with str keys


@dataclass(frozen=True)
class StepInputs:
    """Everything a step's result depends on. `fields` must be JSON-able; its canonical
    serialisation is what is hashed."""

    parent: str
    op: str
    fields: Mapping[str, Json]

    def document(self) -> bytes:
        doc = {"v": KEY_VERSION, "parent": self.parent, "op": self.op, "fields": dict(self.fields)}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")

    def key(self) -> str:
        """The 64-hex sha256 of the canonical document (the form `store.cache` takes)."""
        return hashlib.sha256(self.document()).hexdigest()

    def to_json(self) -> dict[str, Json]:
        return {"parent": self.parent, "op": self.op, "fields": dict(self.fields)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Json]) -> StepInputs:
        return cls(str(doc["parent"]), str(doc["op"]), dict(doc["fields"]))


@dataclass(frozen=True)
class Mount:
    """A RUN --mount as it enters the key: type, target and the identity of its content
    (cache id, bind source digest, secret id), never a secret's value."""

    type: str
    target: str
    ident: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> Json:
        return [self.type, self.target, self.ident, [list(o) for o in self.options]]


def run_inputs(
    parent: str,
    *,
    argv: Sequence[str],
    env: Sequence[str],
    user: str,
    workdir: str,
    network: str = "default",
    mounts: Sequence[Mount] = (),
    epoch: int | None = None,
    hostname: str = "buildkitsandbox",
) -> StepInputs:
    """The inputs of a RUN step (argv already wrapped in SHELL for the shell form)."""
    return StepInputs(
        parent,
        "RUN",
        {
            "argv": list(argv),
            "env": list(env),
            "user": user,
            "workdir": workdir,
            "network": network,
            "hostname": hostname,
            "mounts": [m.to_json() for m in mounts],
            "epoch": epoch,
        },
    )


def copy_inputs(
    parent: str,
    *,
    op: str,
    sources: Sequence[tuple[str, str]],
    dest: str,
    workdir: str,
    source_of: str = "context",
    chown: str = "",
    chmod: str = "",
    link: bool = False,
    parents: bool = False,
    excludes: Sequence[str] = (),
    unpack: bool = False,
    epoch: int | None = None,
) -> StepInputs:
    """The inputs of a COPY/ADD: `sources` are (name as matched, content digest) in order
    (heredocs and URLs included, by their content); `source_of` names where they come from
    (`context`, or a stage's key / an image digest for --from)."""
    return StepInputs(
        parent,
        op,
        {
            "sources": [list(s) for s in sources],
            "from": source_of,
            "dest": dest,
            "workdir": workdir,
            "chown": chown,
            "chmod": chmod,
            "link": link,
            "parents": parents,
            "excludes": list(excludes),
            "unpack": unpack,
            "epoch": epoch,
        },
    )


def explain(old: StepInputs | None, new: StepInputs) -> list[str]:
    """Why `new` missed where `old` (the same step's inputs in the last build) was cached:
    short phrases naming the inputs that changed. Never prints env values or secrets."""
    if old is None:
        return ["not built before"]
    if old.op != new.op:
        return [f"instruction changed ({old.op} -> {new.op})"]
    reasons = []
    if old.parent != new.parent:
        reasons.append("previous step changed")
    for name in sorted(set(old.fields) | set(new.fields)):
        before, after = old.fields.get(name), new.fields.get(name)
        if before == after:
            continue
        if name == "env":
            reasons.extend(_env_changes(before or [], after or []))
        elif name == "sources":
            reasons.extend(_source_changes(before or [], after or []))
        elif name == "epoch":
            reasons.append("SOURCE_DATE_EPOCH changed")
        else:
            reasons.append(f"{name} changed")
    return reasons or ["inputs changed"]


def _env_changes(before: Sequence[str], after: Sequence[str]) -> list[str]:
    old = dict(e.partition("=")[::2] for e in before)
    new = dict(e.partition("=")[::2] for e in after)
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [f"variable {k} changed" for k in names] or ["environment order changed"]


def _source_changes(before: Sequence[Sequence[str]], after: Sequence[Sequence[str]]) -> list[str]:
    old = {name: digest for name, digest in before}
    new = {name: digest for name, digest in after}
    out = [f"source {n} changed" for n in new if n in old and old[n] != new[n]]
    out += [f"source {n} added" for n in new if n not in old]
    out += [f"source {n} removed" for n in old if n not in new]
    return out or ["sources changed"]
