"""What each step's cache-key inputs were in the last build of the same Buildfile, context and
target: kept in `$ROOT/cache/explain/`, read back to say why a step missed the cache.

Losing or damaging the file only loses the explanations ("not built before").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from builder.cachekey import StepInputs
from layerstore.atomic import atomic_write
from layerstore.lazylog import Logger

log = Logger(__name__)


def record_path(store_root: Path, context: Path, buildfile: Path | None, target: str | None) -> Path:
    ident = f"{os.path.abspath(context)}\0{buildfile or '-'}\0{target or ''}"
    return store_root / "cache" / "explain" / (hashlib.sha256(ident.encode()).hexdigest() + ".json")


def load(path: Path) -> dict[str, StepInputs]:
    """Step position (`stage/instruction`) -> its inputs last time; empty when unknown."""
    try:
        doc = json.loads(path.read_bytes())
        return {pos: StepInputs.from_json(d) for pos, d in doc.get("steps", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(path: Path, previous: dict[str, StepInputs], current: dict[str, StepInputs]) -> None:
    """Record this build's inputs over the last ones (atomic; nothing written if unchanged)."""
    merged = {**previous, **current}
    if merged == previous:
        return
    steps = {p: i.to_json() for p, i in merged.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, json.dumps({"v": 1, "steps": steps}, sort_keys=True).encode())
    except OSError as e:
        log.debug("cannot save cache explanations: %s", e)
