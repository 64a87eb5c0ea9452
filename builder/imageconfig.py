"""Metadata instructions: how each one changes the image config, and the history line it leaves.

Pure functions over `StageConfig` (the image config being built plus the stage's variables), with
BuildKit's rules (F81-F94) and its history texts, which are Go's formatting of its values
(`ENV a=b`, `CMD ["/bin/sh" "-c" "x"]` from %q, `VOLUME [/data]` and `EXPOSE [80/tcp]` from %v):
- CMD and ENTRYPOINT in shell form are wrapped in the current SHELL when the Buildfile is built;
  CMD sets ArgsEscaped; ENTRYPOINT clears a CMD inherited from the base unless this stage set one;
  the last of each wins.
- ENV goes into the config and the build environment; ARG only into the build environment.
- LABEL, EXPOSE (expanded, then split; ranges give one port each; protocol lower-cased), VOLUME,
  USER, STOPSIGNAL (checked), HEALTHCHECK (the last wins; NONE disables), SHELL, ONBUILD (stored
  raw), MAINTAINER (the image's author), WORKDIR (relative to the previous one).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, replace

from builder.buildargs import MetaArgs, Scope
from layerstore.oci import ContainerConfig
from parser import (
    Arg,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from parser.gotext import format_duration, format_list, quote_rune, quote_slice
from parser.shell import expand_word, expand_words
from parser.signals import parse_signal
from pybuild.errors import BuildError, ParseError

DEFAULT_SHELL = ("/bin/sh", "-c")
HISTORY_COMMENT = "buildkit.dockerfile.v0"
_PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class StageConfig:
    """The image config a stage is building, with the stage's variables and what BuildKit
    tracks beside it (whether this stage set CMD; the author)."""

    config: ContainerConfig
    scope: Scope
    author: str | None = None
    cmd_set: bool = False

    @property
    def workdir(self) -> str:
        return self.config.working_dir or "/"

    @property
    def user(self) -> str:
        return self.config.user or ""

    @property
    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.shell) if self.config.shell else DEFAULT_SHELL

    def with_scope(self, scope: Scope) -> StageConfig:
        env = tuple(f"{k}={v}" for k, v in scope.config_env)
        return replace(self, scope=scope, config=replace(self.config, env=env))


@dataclass(frozen=True)
class Expander:
    """Expands words of one instruction with the variables before it (F29)."""

    env: Mapping[str, str]
    escape: str
    where: str

    def word(self, text: str) -> str:
        try:
            return expand_word(text, self.env, self.escape)
        except ParseError as e:
            raise BuildError(e.reason, location=self.where) from None

    def words(self, text: str) -> list[str]:
        try:
            return expand_words(text, self.env, self.escape)
        except ParseError as e:
            raise BuildError(e.reason, location=self.where) from None


def expander(sc: StageConfig, instruction: Instruction, escape: str) -> Expander:
    return Expander(sc.scope.lookup(), escape, str(instruction.location))


def workdir_path(current: str, path: str) -> str:
    """WORKDIR's rule: a relative path continues from the current working directory."""
    joined = path if path.startswith("/") else posixpath.join("/", current, path)
    return posixpath.normpath(joined).replace("//", "/") if joined != "/" else "/"


def command_argv(sc: StageConfig, command: tuple[str, ...] | None, prepend_shell: bool) -> tuple[str, ...] | None:
    """RUN/CMD/ENTRYPOINT argv: shell form wrapped in the current SHELL, exec form as is."""
    if command is None:
        return None
    return sc.shell + command if prepend_shell else command


def expose_ports(words: list[str], where: str) -> list[str]:
    """EXPOSE words to config keys, as BuildKit's parsePortSpecs: `80` -> `80/tcp`,
    `8000-8001/UDP` -> two `/udp` entries, `[ip:]hostport:port` -> the container port (the host
    part is checked, then dropped). In order, duplicates kept (the history shows them)."""
    out: list[str] = []
    for word in words:
        parts = word.split(":")
        container, host = parts[-1], (parts[-2] if len(parts) > 1 else "")
        port, _, proto = container.partition("/")
        if not port:
            raise BuildError(f"no port specified: {container}<empty>", location=where)
        proto = (proto or "tcp").lower()
        if proto not in _PROTOCOLS:
            raise BuildError(f"invalid proto: {proto}", location=where)
        first, last = _port_range(port, "containerPort", where)
        if host:
            low, high = _port_range(host, "hostPort", where)
            if high - low != last - first and last != first:
                raise BuildError(f"invalid ranges specified for container and host Ports: {port} and {host}", location=where)
        out.extend(f"{p}/{proto}" for p in range(first, last + 1))
    return out


def _port_range(text: str, what: str, where: str) -> tuple[int, int]:
    """parsePortRange: `80` or `8000-8010`, each 0..65535, the end not below the start."""
    bounds = text.split("-")
    if len(bounds) > 2 or not all(b.isascii() and b.isdigit() and int(b) <= 65535 for b in bounds):
        raise BuildError(f"invalid {what}: {text}", location=where)
    first, last = int(bounds[0]), int(bounds[-1])
    if last < first:
        raise BuildError(f"invalid {what}: {text}", location=where)
    return first, last


def healthcheck_history(h: Healthcheck) -> str:
    """BuildKit's history text for HEALTHCHECK: Go's %q of the config struct pointer,
    `&{["CMD-SHELL" "curl -f x"] "30s" "3s" "0s" "0s" '\\x03'}` (durations through their String
    method, the retry count as a quoted rune), which is what `docker history` shows."""
    durations = (h.interval_ns, h.timeout_ns, h.start_period_ns, h.start_interval_ns)
    shown = " ".join(f'"{format_duration(d or 0)}"' for d in durations)
    return f"HEALTHCHECK &{{{quote_slice(h.test)} {shown} {quote_rune(h.retries or 0)}}}"


def apply_metadata(
    instruction: Instruction,
    sc: StageConfig,
    *,
    escape: str = "\\",
    build_args: Mapping[str, str] | None = None,
    meta: MetaArgs | None = None,
) -> tuple[StageConfig, str]:
    """The stage config after a metadata instruction, and its history `created_by`."""
    x = expander(sc, instruction, escape)
    c = sc.config
    if isinstance(instruction, Env):
        pairs = [(x.word(kv.key), x.word(kv.value)) for kv in instruction.pairs]
        return sc.with_scope(sc.scope.with_env(pairs)), "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if isinstance(instruction, Arg):
        scope, texts = sc.scope, []
        for arg in instruction.args:
            try:
                scope, text = scope.with_arg(arg.name, arg.default, build_args=build_args or {}, meta=meta or MetaArgs(()), escape=escape)
            except ParseError as e:
                raise BuildError(e.reason, location=x.where) from None
            texts.append(text)
        return sc.with_scope(scope), "ARG " + " ".join(texts)
    if isinstance(instruction, Label):
        pairs = [(x.word(kv.key), x.word(kv.value)) for kv in instruction.pairs]
        labels = dict(c.labels or {})
        labels.update(pairs)
        return replace(sc, config=replace(c, labels=labels)), "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
    if isinstance(instruction, Cmd):
        argv = command_argv(sc, instruction.command, instruction.prepend_shell) or ()
        config = replace(c, cmd=argv, args_escaped=True)
        return replace(sc, config=config, cmd_set=True), "CMD " + quote_slice(argv)
    if isinstance(instruction, Entrypoint):
        entry = command_argv(sc, instruction.command, instruction.prepend_shell)
        config = replace(c, entrypoint=entry)  # BuildKit sets ArgsEscaped for CMD only
        if not sc.cmd_set:
            config = replace(config, cmd=None)
        return replace(sc, config=config), "ENTRYPOINT " + quote_slice(entry or ())
    if isinstance(instruction, Expose):
        words = [w for text in instruction.ports for w in x.words(text)]
        exposed = expose_ports(words, x.where)
        ports = dict(c.exposed_ports or {})
        ports.update({p: {} for p in exposed})
        return replace(sc, config=replace(c, exposed_ports=ports)), "EXPOSE " + format_list(exposed)
    if isinstance(instruction, Volume):
        paths = [x.word(p) for p in instruction.paths]
        if any(not p.strip() for p in paths):
            raise BuildError("VOLUME specified can not be an empty string", location=x.where)
        volumes = dict(c.volumes or {})
        volumes.update({p: {} for p in paths})
        return replace(sc, config=replace(c, volumes=volumes)), "VOLUME " + format_list(paths)
    if isinstance(instruction, User):
        user = x.word(instruction.user)
        return replace(sc, config=replace(c, user=user)), f"USER {user}"
    if isinstance(instruction, Stopsignal):
        signal = x.word(instruction.signal)
        try:
            parse_signal(signal)
        except ValueError as e:
            raise BuildError(str(e), location=x.where) from None
        return replace(sc, config=replace(c, stop_signal=signal)), f"STOPSIGNAL {signal}"
    if isinstance(instruction, Healthcheck):
        health: dict[str, object] = {"Test": list(instruction.test)}
        for key, value in (
            ("Interval", instruction.interval_ns),
            ("Timeout", instruction.timeout_ns),
            ("StartPeriod", instruction.start_period_ns),
            ("StartInterval", instruction.start_interval_ns),
            ("Retries", instruction.retries),
        ):
            if value:
                health[key] = value
        return replace(sc, config=replace(c, healthcheck=health)), healthcheck_history(instruction)
    if isinstance(instruction, Shell):
        return replace(sc, config=replace(c, shell=instruction.shell)), "SHELL " + format_list(instruction.shell)
    if isinstance(instruction, Onbuild):
        triggers = tuple(c.on_build or ()) + (instruction.expression,)
        return replace(sc, config=replace(c, on_build=triggers)), f"ONBUILD {instruction.expression}"
    if isinstance(instruction, Maintainer):
        return replace(sc, author=instruction.maintainer), f"MAINTAINER {instruction.maintainer}"
    if isinstance(instruction, Workdir):
        path = workdir_path(sc.workdir, x.word(instruction.path))
        return replace(sc, config=replace(c, working_dir=path)), f"WORKDIR {path}"
    raise BuildError(f"{instruction.keyword} is not a metadata instruction", location=x.where)


METADATA = (Env, Arg, Label, Cmd, Entrypoint, Expose, Volume, User, Stopsignal, Healthcheck, Shell, Onbuild, Maintainer)
