"""The user-facing error hierarchy.

Library code raises these with structured fields; only the CLI prints them (one `error:` line per
problem, then an optional `hint:` line) and chooses the exit status. This module imports nothing of
ours so that every package can use it without creating a dependency cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class PybuildError(Exception):
    """Base of every error a user can cause or fix.

    `exit_code` is what the CLI exits with; `hint` is an optional second line telling the user what
    to do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> Iterator[str]:
        """The `error:` lines to print, one per problem (most errors are one problem)."""
        yield self.message

    def entries(self) -> Iterator[tuple[str, str | None]]:
        """Each problem with its own hint: what the CLI prints as `error:` and `hint:` lines."""
        yield self.message, self.hint

    def __str__(self) -> str:
        return "\n".join(self.lines())


class ParseError(PybuildError):
    """A Buildfile (or ignore file, reference, ...) that cannot be read, with its source location.

    The message is rendered `FILE:LINE:COL: message`; `line` and `column` are 1-based, and either
    may be 0 when unknown (then it is left out).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int = 0,
        column: int = 0,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.reason = message
        self.file = file
        self.line = line
        self.column = column
        self.message = self.located()

    def located(self) -> str:
        where = [self.file or "<input>"]
        if self.line:
            where.append(str(self.line))
            if self.column:
                where.append(str(self.column))
        return ":".join(where) + ": " + self.reason

    def at(self, file: str | None) -> ParseError:
        """The same error attributed to `file` (used when the text's origin is known later)."""
        return ParseError(self.reason, file=file, line=self.line, column=self.column, hint=self.hint)


class ParseErrors(ParseError):
    """Several parse errors found in one pass; the CLI prints one `error:` line for each."""

    def __init__(self, errors: Sequence[ParseError]) -> None:
        if not errors:
            raise ValueError("ParseErrors needs at least one error")
        first = errors[0]
        hint = next((e.hint for e in errors if e.hint), None)
        super().__init__(first.reason, file=first.file, line=first.line, column=first.column, hint=hint)
        self.errors = list(errors)

    def lines(self) -> Iterator[str]:
        for e in self.errors:
            yield e.message

    def entries(self) -> Iterator[tuple[str, str | None]]:
        for e in self.errors:
            yield e.message, e.hint

    def at(self, file: str | None) -> ParseErrors:
        return ParseErrors([e.at(file) for e in self.errors])


class BuildError(PybuildError):
    """A build step that failed; `location` is `Buildfile:LINE` of the instruction."""

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        exit_status: int | None = None,
        output_tail: str | None = None,
        hint: str | None = None,
    ) -> None:
        text = f"{location}: {message}" if location else message
        super().__init__(text, hint=hint)
        self.location = location
        self.exit_status = exit_status
        self.output_tail = output_tail


class StoreError(PybuildError):
    """The store is locked, damaged, full, or asked to do something it cannot."""


class DigestMismatch(StoreError):
    """Content whose sha256 (or size) is not what its descriptor promised."""

    def __init__(self, what: str, *, expected: str, got: str, hint: str | None = None) -> None:
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {got}", hint=hint)
        self.what = what
        self.expected = expected
        self.got = got


class NotFound(PybuildError):
    """An image, tag, container, volume, blob or path that does not exist."""


class RegistryError(PybuildError):
    """A registry answered with an error (or not at all)."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class RuntimeError_(PybuildError):
    """The sandbox could not be set up or a container operation failed (Docker exits 125 for these
    on `run`)."""

    exit_code = 125
