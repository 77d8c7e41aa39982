"""Errors a user can fix, and the exit code each one ends the process with.

The CLI turns these into a one-line message on stderr; anything else is a bug
and keeps its traceback.
"""


class SftError(Exception):
    """A problem with the user's input, stated with a hint at the fix."""

    exit_code = 1


class ConfigError(SftError):
    """The configuration file or a `--set` override is wrong."""

    exit_code = 3


class DataError(SftError):
    """A data file is missing, unreadable, or holds nothing usable."""

    exit_code = 4


class RunDirError(SftError):
    """A run directory is missing, incomplete, or would be overwritten."""

    exit_code = 5


class HubError(SftError):
    """A model handle cannot be resolved, or a checkpoint cannot be converted."""

    exit_code = 6


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report the traceback)",
    2: "wrong command-line usage (unknown option, missing argument)",
    ConfigError.exit_code: "configuration error",
    DataError.exit_code: "data error",
    RunDirError.exit_code: "run directory error",
    HubError.exit_code: "model handle or checkpoint error",
}
