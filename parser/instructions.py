"""The typed instruction level: one frozen dataclass per Buildfile instruction, grouped in stages.

Values are as written in the Buildfile: nothing is expanded (the builder expands with
`parser.shell.expand_word` and the stage's variables, per F30 of the feature reference), but
everything a builder would otherwise re-parse is already split out: exec vs shell form, flags,
`--mount` specs, heredoc bodies, ENV/LABEL/ARG pairs, HEALTHCHECK durations.

Every instruction has `location` (file, line, column, end_line) and `original` (the instruction
line with continuations joined), and keeps the `node` it was built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from parser.mounts import Device, MountSpec
from parser.nodes import Directives, Heredoc, Node, NodeTree, ParseWarning


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int
    end_line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, kw_only=True)
class Instruction:
    keyword: ClassVar[str] = ""
    location: Location
    original: str
    node: Node = field(compare=False, repr=False)

    @property
    def file(self) -> str:
        return self.location.file

    @property
    def line(self) -> int:
        return self.location.line

    @property
    def column(self) -> int:
        return self.location.column

    @property
    def end_line(self) -> int:
        return self.location.end_line


@dataclass(frozen=True, kw_only=True)
class CommandLine(Instruction):
    """RUN, CMD and ENTRYPOINT: BuildKit's ShellDependantCmdLine.

    Shell form: `command` is one string and `prepend_shell` is True (argv = SHELL + command).
    Exec form: `command` is the argv, used as is (no variable expansion, no shell)."""

    command: tuple[str, ...] | None
    prepend_shell: bool

    @property
    def shell_text(self) -> str | None:
        """The shell-form command text, or None in exec form."""
        return self.command[0] if self.prepend_shell and self.command else None


@dataclass(frozen=True, kw_only=True)
class KeyValue:
    key: str  # unexpanded, quotes kept
    value: str  # unexpanded, quotes kept
    legacy: bool = False  # from the `KEY value words` form


@dataclass(frozen=True, kw_only=True)
class ArgDef:
    name: str  # unexpanded
    default: str | None  # None: `ARG name` with no default; "" for `ARG name=`


@dataclass(frozen=True)
class HeredocSource:
    """A COPY/ADD source written as a heredoc: a file named `name` holding `data`."""

    name: str
    data: str  # the body, leading tabs already removed for `<<-`
    expand: bool  # expand `$` forms (with parser.shell.expand_heredoc) before writing


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    keyword: ClassVar[str] = "FROM"
    image: str  # unexpanded: may use global ARGs
    name: str | None  # the stage name, lower-cased (references are case-insensitive)
    platform: str | None


@dataclass(frozen=True, kw_only=True)
class Run(CommandLine):
    keyword: ClassVar[str] = "RUN"
    mounts: tuple[MountSpec, ...] = ()
    network: str = "default"
    security: str = "sandbox"
    devices: tuple[Device, ...] = ()
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Cmd(CommandLine):
    keyword: ClassVar[str] = "CMD"


@dataclass(frozen=True, kw_only=True)
class Entrypoint(CommandLine):
    """`command` is None for `ENTRYPOINT []` and a bare `ENTRYPOINT` (both clear it)."""

    keyword: ClassVar[str] = "ENTRYPOINT"


@dataclass(frozen=True, kw_only=True)
class SourcesAndDest(Instruction):
    """What COPY and ADD share (BuildKit's SourcesAndDest plus the common flags)."""

    sources: tuple[str, ...]  # unexpanded paths (or URLs), in order
    dest: str  # unexpanded
    heredoc_sources: tuple[HeredocSource, ...] = ()
    chown: str | None = None  # unexpanded
    chmod: str | None = None  # unexpanded
    link: bool = False
    exclude: tuple[str, ...] = ()  # unexpanded patterns
    json_form: bool = False


@dataclass(frozen=True, kw_only=True)
class Copy(SourcesAndDest):
    keyword: ClassVar[str] = "COPY"
    from_: str | None = None  # a stage name or index, an image, or a named context; never expanded
    parents: bool = False


@dataclass(frozen=True, kw_only=True)
class Add(SourcesAndDest):
    keyword: ClassVar[str] = "ADD"
    keep_git_dir: bool = False
    checksum: str | None = None  # unexpanded
    unpack: bool | None = None  # None: BuildKit's default (local archives unpack, remote ones not)


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    keyword: ClassVar[str] = "ENV"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDef, ...]


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]  # the words as written; expand then split with parser.shell.expand_words


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: tuple[str, ...]  # unexpanded
    json_form: bool = False


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str  # unexpanded


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str  # unexpanded `user[:group]`


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Stopsignal(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str  # unexpanded; parser.signals.parse_signal checks the expanded value


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """`test` is the image config's Healthcheck.Test: ("NONE",), ("CMD", argv...) or
    ("CMD-SHELL", text). Durations are nanoseconds, 0 meaning the runtime's default."""

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """`expression` is what goes into the image config's OnBuild list: the trigger as written
    (heredoc bodies appended); `trigger` is that instruction parsed, or None when it would not
    parse (BuildKit only parses a trigger when it fires, in a child build)."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction | None = None


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str


@dataclass(frozen=True)
class Stage:
    """One FROM and the instructions after it, up to the next FROM. Its name, base and platform
    are the FROM's."""

    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        """The stage name, lower-cased (references are case-insensitive)."""
        return self.from_.name

    @property
    def base(self) -> str:
        """The FROM image or stage, unexpanded."""
        return self.from_.image

    @property
    def platform(self) -> str | None:
        return self.from_.platform

    @property
    def location(self) -> Location:
        return self.from_.location


@dataclass(frozen=True)
class Buildfile:
    """A parsed Buildfile: its stages, the ARGs before the first FROM, directives, warnings."""

    file: str
    stages: tuple[Stage, ...]
    global_args: tuple[Arg, ...]
    directives: Directives
    warnings: tuple[ParseWarning, ...]
    nodes: NodeTree

    @property
    def escape(self) -> str:
        return self.directives.escape

    def stage(self, name_or_index: str) -> Stage | None:
        """The stage a `--from`/`--target` value names: a stage name (any case) or an index."""
        if name_or_index.isdecimal():
            i = int(name_or_index)
            return self.stages[i] if i < len(self.stages) else None
        wanted = name_or_index.lower()
        found = [s for s in self.stages if s.name == wanted]
        return found[-1] if found else None  # a duplicate name: the later stage wins


INSTRUCTION_CLASSES: dict[str, type[Instruction]] = {
    cls.keyword: cls
    for cls in (From, Run, Cmd, Entrypoint, Copy, Add, Env, Label, Arg, Expose, Volume, Workdir, User, Shell,
                Stopsignal, Healthcheck, Onbuild, Maintainer)
}
