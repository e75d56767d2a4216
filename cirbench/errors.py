"""Exceptions that the CLI turns into one clear line and an exit code."""


def short(value, limit: int = 80) -> str:
    """A value's repr cut to about ``limit`` characters, for one-line messages (a 10 KB caption is not
    echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class CirbenchError(Exception):
    """Base class: a failure that is reported as a single line without a traceback."""

    exit_code = 1


class UsageError(CirbenchError):
    """The user asked for something that cannot be (unknown name, bad option, bad prompt)."""

    exit_code = 2


class DataError(CirbenchError):
    """Input data on disk is missing or malformed; the message names the file and the problem."""

    exit_code = 2


class MissingResourceError(UsageError):
    """Something a method needs from outside is not there (weights, released texts, a local model);
    under `--method all` a method that declares such needs is skipped with this line as a note."""


class MissingCheckpointError(MissingResourceError):
    """A trained method has no checkpoint; the message says how to get one."""


class RunError(CirbenchError):
    """A run started but could not finish."""

    exit_code = 1


class DiskFullError(UsageError):
    """A write found no space left: the message names the file, what it needed and what is free."""
