"""RUN --mount: what each mount contributes to the cache key, and the host side that backs it.

- `cache` (F56): a directory kept in the store under `cache/mounts/<sha256 of id>/`, created with
  `mode`/`uid`/`gid` (default 0755, 0:0) and seeded from `from=`/`source=` when new. `sharing=
  locked` takes an exclusive lock for the step; `private` uses a fresh temporary directory when
  another build holds the cache; `shared` (the default) shares it. Never in a layer, and only its
  id and options enter the key.
- `bind` (F55): a subpath of the build context (with .dockerignore applied), of an earlier stage,
  or of an image; read-only unless `rw`, and then writes go to a throwaway overlay upper. The
  source's content digest (or the stage's key) enters the key.
- `tmpfs` (F57): empty on every run.
- `secret` (F58): the file or environment value given with `--secret id=...`, copied to a
  private temp file with `mode`/`uid`/`gid` (default 0400, 0:0) and bind-mounted at the target
  (default `/run/secrets/<id>`), or handed to the process as `env=NAME`. Only the id, target and
  options enter the key; the value never reaches the key, the history or a layer. A missing
  secret is an error when `required`, else an empty file.
- `ssh` is not supported.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from builder.cachekey import Mount as KeyMount
from builder.context import SourceTree
from builder.copy import CopyOptions, merge_tree
from layerstore.rootpath import resolve_in_root
from parser import Mount as MountOptions
from parser import MountError, MountSpec
from pybuild.errors import BuildError, NotFound
from runner.mounts import overlay_rootfs


@dataclass(frozen=True)
class Secret:
    """A `--secret id=ID,src=FILE` or `--secret id=ID,env=VAR` given to the build."""

    id: str
    src: Path | None = None
    env: str | None = None

    def value(self, environ: Mapping[str, str]) -> bytes | None:
        if self.src is not None:
            try:
                return self.src.read_bytes()
            except OSError as e:
                raise BuildError(f"secret {self.id}: cannot read {self.src}: {e.strerror}") from None
        if self.env is not None and self.env in environ:
            return environ[self.env].encode()
        return None


def parse_secret(text: str) -> Secret:
    """A --secret value: `id=ID[,src=PATH|source=PATH][,env=VAR][,type=file|env]` (docker CLI's
    rules: without src or env, an environment variable named like the id, else a file)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise BuildError(f"invalid --secret {text!r}: {part!r} is not key=value")
        fields[key.strip().lower()] = value
    sid = fields.get("id")
    if not sid:
        raise BuildError(f"invalid --secret {text!r}: id is required")
    src = fields.get("src") or fields.get("source")
    env = fields.get("env")
    if src is None and env is None:
        if fields.get("type") == "file":
            raise BuildError(f"invalid --secret {text!r}: a file secret needs src=")
        env = sid
    return Secret(sid, Path(src).expanduser() if src else None, env)


@dataclass(frozen=True)
class RunMount:
    """One resolved --mount of a RUN step (values expanded, target absolute)."""

    options: MountOptions
    target: str
    ident: str  # what enters the cache key besides the options


def resolve_mounts(specs: tuple[MountSpec, ...], expand: Callable[[str], str], where: str) -> list[MountOptions]:
    """Each --mount with its values expanded and checked; ssh mounts are refused."""
    out = []
    for spec in specs:
        try:
            m = spec.resolve(expand)
        except MountError as e:
            raise BuildError(str(e), location=where, hint=e.hint) from None
        if m.type == "ssh":
            raise BuildError("RUN --mount=type=ssh is not supported by pybuild", location=where)
        out.append(m)
    return out


def mount_target(m: MountOptions, workdir: str) -> str:
    """The absolute target of a mount (relative ones are under WORKDIR; secrets default to
    /run/secrets/<id>)."""
    target = m.target
    if not target and m.type == "secret":
        target = "/run/secrets/" + secret_id(m)
    if not target:
        raise BuildError(f"{m.type} mount needs a target")
    return posixpath.normpath(target if target.startswith("/") else posixpath.join(workdir, target))


def cache_id(m: MountOptions, namespace: str = "") -> str:
    """A cache mount's id (F56): `id=`, else the target as written, cleaned (BuildKit defaults it
    before making the target absolute); under BUILDKIT_CACHE_MOUNT_NS when that is set."""
    cid = m.cache_id or posixpath.normpath(m.target or "/")
    return posixpath.join(namespace, cid) if namespace else cid


def secret_id(m: MountOptions) -> str:
    return m.cache_id or m.source or os.path.basename((m.target or "").rstrip("/"))


def key_mount(m: MountOptions, target: str, ident: str) -> KeyMount:
    opts = (
        ("ro", str(m.readonly)),
        ("sharing", m.sharing or ""),
        ("mode", "" if m.mode is None else oct(m.mode)),
        ("uid", "" if m.uid is None else str(m.uid)),
        ("gid", "" if m.gid is None else str(m.gid)),
        ("size", "" if m.size_limit is None else str(m.size_limit)),
        ("env", m.env or ""),
        ("required", str(m.required)),
    )
    return KeyMount(m.type, target, ident, opts)


class Backing:
    """Creates the host side of a step's mounts inside an ExitStack; everything temporary is
    removed and every lock released when the stack closes."""

    def __init__(self, store_root: Path, scratch: Path, stack: ExitStack) -> None:
        self.store_root = store_root
        self.scratch = scratch
        self.stack = stack

    def tmpdir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.scratch))
        self.stack.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def cache_dir(self, m: MountOptions, cid: str, seed: Callable[[Path], None] | None) -> Path:
        """The directory of cache `cid` (see `cache_id`), created and seeded when new, locked as
        `sharing` says until the stack closes."""
        base = self.store_root / "cache" / "mounts" / hashlib.sha256(cid.encode()).hexdigest()
        base.mkdir(parents=True, exist_ok=True)
        data = base / "data"
        lock_fd = os.open(base / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.stack.callback(os.close, lock_fd)
        sharing = m.sharing or "shared"
        if sharing == "locked":
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        elif sharing == "private":
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                data = self.tmpdir("cache-private-") / "data"
        else:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        if not data.exists():
            fresh = Path(tempfile.mkdtemp(prefix=".new-", dir=data.parent))
            os.chmod(fresh, 0o755 if m.mode is None else m.mode)
            os.chown(fresh, m.uid or 0, m.gid or 0)
            if seed is not None:
                seed(fresh)
            try:
                os.rename(fresh, data)
            except OSError:
                shutil.rmtree(fresh, ignore_errors=True)  # another build created it first
        return data

    def overlay_view(self, lowers: list[Path]) -> Path:
        """A throwaway writable view of `lowers` (top first); removed with the stack."""
        upper = self.tmpdir("view-") / "upper"
        upper.mkdir()
        return self.stack.enter_context(overlay_rootfs(lowers, upper))

    def secret_file(self, data: bytes, m: MountOptions) -> Path:
        path = self.tmpdir("secret-") / "value"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chown(path, m.uid or 0, m.gid or 0)
        os.chmod(path, 0o400 if m.mode is None else m.mode)
        return path


def context_subtree(tree: SourceTree, source: str, scratch: Path) -> Path:
    """A host directory holding exactly what the context shows at `source` (ignored files
    absent): the directory itself when nothing is ignored, else a copy made with hard links."""
    entry = tree.entry(source or "/")
    host = tree.host(entry.rel)
    if tree.ignore is None:
        return host
    farm = Path(tempfile.mkdtemp(prefix="bind-", dir=scratch)) / "src"
    farm.mkdir()
    if not entry.is_dir:
        dest = farm / os.path.basename(host)
        _link_or_copy(host, dest)
        return dest
    for child in tree.walk(entry.rel):
        rel = child.rel[len(entry.rel) + 1 :] if entry.rel else child.rel
        dest = farm / rel
        if child.is_dir:
            dest.mkdir()
            shutil.copystat(tree.host(child.rel), dest)
        elif child.is_symlink:
            os.symlink(os.readlink(tree.host(child.rel)), dest)
        else:
            _link_or_copy(tree.host(child.rel), dest)
    return farm


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dest, follow_symlinks=False)


def seed_from(view: Path, source: str) -> Callable[[Path], None]:
    """A cache seeder copying `source` of a stage/image view into a new cache directory."""

    def seed(target: Path) -> None:
        src = resolve_in_root(view, source or "/")
        if not src.is_dir():
            raise NotFound(f"cache mount source {source!r} is not a directory")
        merge_tree(SourceTree(src, name="cache seed"), target, CopyOptions())

    return seed
