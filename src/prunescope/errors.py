"""Errors a user can cause, and the exit code each one ends with (docs/formats.md, "Pinned names")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2


class PrunescopeError(Exception):
    """An error whose message is meant for the user: the CLI prints it as one line."""

    exit_code = EXIT_ENVIRONMENT


class UserInputError(PrunescopeError):
    """Bad config, arguments, data or run directory: exit code 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserInputError):
    """A config value that fails validation. ``lines`` holds one message per bad field."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("; ".join(self.lines))


class DataError(UserInputError):
    """A dataset that is missing, incomplete or corrupt."""


class RunDirError(UserInputError):
    """A run directory that is damaged, foreign, locked or made with another config."""


class UnwritablePath(UserInputError):
    """A folder the user named (``--run-dir``, ``--out``) that cannot be written: exit code 2."""


class Unsupported(UserInputError):
    """An analysis or command that cannot handle this model (no graph to trace, a layer
    kind it cannot resize): the others go on, and the report says what is missing and why."""


class AnalysisFailed(PrunescopeError):
    """Analyses that failed; the others and the report were made: exit code 1."""


class EnvironmentFault(PrunescopeError):
    """The machine, not the input: a full disk, a path that cannot be written."""

    exit_code = EXIT_ENVIRONMENT


class NonFiniteLossError(PrunescopeError):
    """Training diverged; completed levels stay intact."""

    exit_code = EXIT_ENVIRONMENT


class Terminated(BaseException):
    """SIGTERM (what SLURM and torchrun send): unwinds like Ctrl-C, so locks are released."""


def readable(message: str, longest: int = 200) -> str:
    """A message with every overlong word (an echoed path or value) cut to a readable length."""
    words = message.split(" ")
    cut = [
        w if len(w) <= longest else f"{w[:120]}...{w[-40:]} ({len(w):,} characters)" for w in words
    ]
    text = " ".join(cut)
    return text if len(text) <= 4 * longest * 5 else text[: 4 * longest * 5] + "..."


def shorten(value: object, limit: int = 80) -> str:
    """``repr`` of a value cut to a readable length (a hostile value may be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_problem(exc, whole: str = "(top level)") -> str:
    """A pydantic ``ValidationError`` as one line: its first field, message and the value
    it got ("format_version: Input should be 1 (got 2)"); ``whole`` names the top level."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or whole
    got = f" (got {shorten(err.get('input'), 60)})" if "input" in err else ""
    return f"{shorten(field, 120)}: {err['msg']}{got}"
