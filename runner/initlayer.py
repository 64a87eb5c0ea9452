"""The init layer: mount points that the image lacks, kept out of the container's upper dir.

Bind-mounting onto `/etc/hosts`, or mounting /proc, needs something at that path. Creating it in
the merged view would write it into the upper dir, and so into the next committed layer. Docker's
answer, used here too: a small extra lower dir between the image's layers and the upper, holding
just the missing placeholders (empty files and dirs). The upper stays exactly the container's own
changes.

Paths are resolved through the layer stack the way overlayfs presents it (whiteouts hide lower
entries, opaque dirs hide lower dirs, a higher non-dir hides everything below), following symlinks
re-rooted at the container root, so a placeholder for `/etc/hosts` lands where `/etc` really
points. A directory the init layer must recreate to hold a placeholder gets the mode, owner and
times of the image's directory, so the merged view (and any later copy-up) is unchanged.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from layerstore.rootpath import resolve_parts

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Placeholder:
    """A path the container needs to exist, and whether a dir or a file should stand there."""

    path: str
    is_dir: bool


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def union_lstat(layers: list[Path], parts: list[str]) -> tuple[os.stat_result, Path] | None:
    """lstat of the path `parts` (whose ancestors are directories in the union) as overlayfs shows
    it over `layers` (top first): the entry's stat and the layer it comes from, or None if absent."""
    for layer in layers:
        hidden_below = False
        ancestor = str(layer)
        present = True
        for name in parts[:-1]:
            ancestor = os.path.join(ancestor, name)
            try:
                st = os.lstat(ancestor)
            except FileNotFoundError:
                present = False
                break
            if not stat.S_ISDIR(st.st_mode):
                return None  # a whiteout or non-dir here hides the path in every lower layer
            if _is_opaque(ancestor):
                hidden_below = True
        if present:
            try:
                entry: os.stat_result | None = os.lstat(os.path.join(layer, *parts))
            except (FileNotFoundError, NotADirectoryError):
                entry = None
            if entry is not None:
                return None if _is_whiteout(entry) else (entry, layer)
        if hidden_below:
            return None
    return None


def union_resolve(layers: list[Path], path: str) -> tuple[list[str], tuple[os.stat_result, Path] | None]:
    """Resolve `path` in the union of `layers` as if it were `/`, following every symlink
    (re-rooted at the top, as rootpath.resolve_in_root does): the resolved components and the
    final entry's (stat, layer), or None if it is absent (or is the root itself)."""

    layer_of: dict[tuple[str, ...], Path] = {}  # where lstat found each link, for readlink

    def lstat(parts: list[str]) -> os.stat_result | None:
        found = union_lstat(layers, parts)
        if found is None:
            return None
        layer_of[tuple(parts)] = found[1]
        return found[0]

    def readlink(parts: list[str]) -> str:
        return os.readlink(os.path.join(layer_of[tuple(parts)], *parts))

    parts = resolve_parts(path, lstat=lstat, readlink=readlink)
    return parts, union_lstat(layers, parts) if parts else None


def build(init_dir: Path, layers: list[Path], needed: list[Placeholder]) -> dict[str, str]:
    """Create in `init_dir` (an empty directory) the placeholders of `needed` that the union of
    `layers` (top first: the upper dir, then the image's layers) lacks.

    Returns {wanted path: resolved path inside the root} for every placeholder, so mounts go
    where the path really leads. Idempotent for the same inputs.
    """
    resolved_paths: dict[str, str] = {}
    dir_times: list[tuple[str, os.stat_result]] = []
    for item in needed:
        parts, found = union_resolve(layers, item.path)
        resolved_paths[item.path] = "/" + "/".join(parts)
        if found is not None or not parts:
            continue
        # Recreate the parents in the init layer, with the image's metadata where it has them.
        current = str(init_dir)
        for i, name in enumerate(parts[:-1]):
            current = os.path.join(current, name)
            if os.path.isdir(current):
                continue
            os.mkdir(current, 0o755)
            original = union_lstat(layers, parts[: i + 1])
            if original is not None:
                st = original[0]
                os.chown(current, st.st_uid, st.st_gid)
                os.chmod(current, stat.S_IMODE(st.st_mode))
                dir_times.append((current, st))
        target = os.path.join(current, parts[-1])
        if item.is_dir:
            os.makedirs(target, 0o755, exist_ok=True)
        elif not os.path.lexists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    for path, st in reversed(dir_times):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return resolved_paths
