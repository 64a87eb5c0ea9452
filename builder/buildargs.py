"""ARG and ENV: scoping, precedence and what each instruction sees (F32-F42, F101, F104).

BuildKit keeps two environments per stage, and so does `Scope`:
- the *build* environment (its LLB state's env): the base image's Env, then every ENV and every
  ARG with a value, in the order they were set, a later setting of a name replacing the earlier
  one in place. Variable expansion and RUN see this; BuildKit therefore lets an ARG declared
  after an ENV of the same name win for the build (F37).
- the image *config* Env: the base image's Env (plus a default PATH, F42) and ENV only.
Declared ARGs are remembered in order, with or without a value: a stage built FROM another stage
inherits them (F35), and RUN's history line lists them (`RUN |2 A=1 B= cmd`, F36).

Global ARGs (before the first FROM) are resolved once (`resolve_meta_args`): defaults are
expanded with the earlier globals and the automatic platform ARGs, and a `--build-arg` replaces
the value. Inside a stage a global is unset until `ARG NAME` re-declares it (F33). An ARG's value
is, in order: the `--build-arg` (taken literally), its default expanded where it stands, the
global of the same name; else it is declared but unset (F34). Proxy ARGs reach RUN from
`--build-arg` without a declaration, but stay out of history and cache keys (F39).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from parser.shell import expand_word
from pybuild.errors import ParseError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
# Build args BuildKit never puts in the environment.
NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

Pair = tuple[str, str]
OptionalPair = tuple[str, "str | None"]


def parse_build_args(values: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`--build-arg K=V` values; `--build-arg K` takes K from the environment and is dropped
    when the environment has no K (the docker CLI's rule). Later values win."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not name:
            raise ParseError(f"invalid --build-arg {value!r}: the name is empty")
        if sep:
            out[name] = text
        elif name in environ:
            out[name] = environ[name]
    return out


def platform_args(target_stage: str = "") -> dict[str, str]:
    """The automatic global ARGs for building on and for this machine (F40)."""
    arch = _ARCHES.get(platform.machine(), platform.machine())
    variant = "v8" if arch == "arm64" else ("v7" if arch == "arm" else "")
    plat = f"linux/{arch}" + (f"/{variant}" if variant else "")
    args = {}
    for prefix in ("TARGET", "BUILD"):
        args.update({f"{prefix}PLATFORM": plat, f"{prefix}OS": "linux", f"{prefix}ARCH": arch, f"{prefix}VARIANT": variant})
    args["TARGETSTAGE"] = target_stage
    return args


@dataclass(frozen=True)
class MetaArgs:
    """The resolved global ARGs (automatic ones first), name -> value or None (declared, unset)."""

    pairs: tuple[OptionalPair, ...]

    def get(self, name: str) -> tuple[bool, str | None]:
        """(declared, value) of a global ARG; the last declaration wins."""
        found, value = False, None
        for key, v in self.pairs:
            if key == name:
                found, value = True, v
        return found, value

    def env(self) -> dict[str, str]:
        """The globals with values: what FROM lines and global defaults are expanded with."""
        return {k: v for k, v in self.pairs if v is not None}


def resolve_meta_args(
    decls: Sequence[OptionalPair],
    build_args: Mapping[str, str],
    *,
    builtins: Mapping[str, str] | None = None,
    escape: str = "\\",
) -> MetaArgs:
    """Resolve the ARGs before the first FROM (`decls`: name and raw default or None)."""
    pairs: list[OptionalPair] = list((builtins or {}).items())
    for name, default in decls:
        value = default
        if value is not None:
            value = expand_word(value, MetaArgs(tuple(pairs)).env(), escape)
        if name in build_args:
            value = build_args[name]
        pairs.append((name, value))
    return MetaArgs(tuple(pairs))


def _set(pairs: tuple[Pair, ...], name: str, value: str) -> tuple[Pair, ...]:
    """Replace `name` in place, or append it."""
    for i, (key, _) in enumerate(pairs):
        if key == name:
            return pairs[:i] + ((name, value),) + pairs[i + 1 :]
    return pairs + ((name, value),)


def split_env(entries: Iterable[str]) -> tuple[Pair, ...]:
    """`["K=V", ...]` (an image config's Env) as pairs; an entry without `=` has an empty value."""
    out: tuple[Pair, ...] = ()
    for entry in entries:
        name, _, value = entry.partition("=")
        out = _set(out, name, value)
    return out


@dataclass(frozen=True)
class Scope:
    """A stage's variables at one point of the Buildfile. Transforms return new scopes."""

    env: tuple[Pair, ...] = ()
    config_env: tuple[Pair, ...] = ()
    args: tuple[OptionalPair, ...] = ()

    @classmethod
    def from_image_env(cls, entries: Iterable[str]) -> Scope:
        """The scope at `FROM <image>` (or scratch, with no entries): its Env, plus PATH if absent."""
        config = split_env(entries)
        if not any(k == "PATH" for k, _ in config):
            config = config + (("PATH", DEFAULT_PATH),)
        return cls(env=config, config_env=config)

    def lookup(self) -> dict[str, str]:
        """What `$NAME` means in this stage's instructions."""
        return dict(self.env)

    def with_env(self, pairs: Iterable[Pair]) -> Scope:
        """After `ENV k=v ...` (values already expanded with the scope before the instruction)."""
        env, config = self.env, self.config_env
        for name, value in pairs:
            env = _set(env, name, value)
            config = _set(config, name, value)
        return Scope(env, config, self.args)

    def with_arg(
        self, name: str, default: str | None, *, build_args: Mapping[str, str], meta: MetaArgs, escape: str = "\\"
    ) -> tuple[Scope, str]:
        """After one `ARG name[=default]` (F34); also returns its history text (`K=V` or `K`)."""
        if name in build_args:
            value: str | None = build_args[name]
        elif default is not None:
            value = expand_word(default, self.lookup(), escape)
        else:
            _, value = meta.get(name)
        env = self.env
        if value is not None and name not in NON_ENV_ARGS:
            env = _set(env, name, value)
        scope = Scope(env, self.config_env, self.args + ((name, value),))
        return scope, name if value is None else f"{name}={value}"

    def run_args(self) -> list[str]:
        """The declared ARGs as RUN's history shows them: `K=V`, the current build value (an ENV
        may have replaced it) or empty, one per name in first-declared order."""
        current = dict(self.env)
        order: dict[str, str] = {}
        for name, value in self.args:
            order[name] = current.get(name, value if value is not None else "")
        return [f"{k}={v}" for k, v in order.items()]

    def run_env(self, build_args: Mapping[str, str] | None = None) -> list[str]:
        """RUN's environment: the build environment, plus proxy settings given as --build-arg
        that no ARG declared (they stay out of history and cache keys)."""
        out = [f"{k}={v}" for k, v in self.env]
        declared = {k for k, _ in self.args}
        for name in PROXY_ARGS:
            if build_args and name in build_args and name not in declared:
                out.append(f"{name}={build_args[name]}")
        return out


def run_history(argv: Sequence[str], scope: Scope) -> str:
    """RUN's history text: `RUN |N K=V ... argv` (the `|N` part only when ARGs are declared)."""
    args = scope.run_args()
    prefix = [f"|{len(args)}", *args] if args else []
    return "RUN " + " ".join([*prefix, *argv])


def source_date_epoch(meta: MetaArgs, build_args: Mapping[str, str], environ: Mapping[str, str] | None = None) -> int | None:
    """SOURCE_DATE_EPOCH from a --build-arg, a global ARG, or the environment (F104); a value
    that is not a non-negative integer is an error."""
    environ = os.environ if environ is None else environ
    value: str | None
    if "SOURCE_DATE_EPOCH" in build_args:
        value = build_args["SOURCE_DATE_EPOCH"]
    else:
        _, value = meta.get("SOURCE_DATE_EPOCH")
        if value is None:
            value = environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit():
        raise ParseError(f"invalid SOURCE_DATE_EPOCH {value!r}: expected seconds since 1970 (a whole number)")
    return int(value)
