"""Errors a user can fix, and the exit code each one ends the process with.

The CLI turns these into a one-line message on stderr; anything else is a bug
and keeps its traceback.
"""


MAX_MESSAGE = 1000  # characters: a message quoting user input never floods a terminal


def one_line(message: str) -> str:
    """`message` as one line of at most MAX_MESSAGE characters."""
    flat = " ".join(message.splitlines())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 1] + "…"


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


class CheckpointError(HubError):
    """Saved weights or a training checkpoint cannot be used: corrupt, or not finite."""


class TrainingDiverged(SftError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 7


class ServeError(SftError):
    """`sft serve` cannot listen on its address, or its model fails to load."""

    exit_code = 8


class ExportRefused(SftError):
    """An int8 export lost more validation accuracy than export.max_accuracy_drop allows."""

    exit_code = 9


class TrainingInterrupted(SftError):
    """SIGINT or SIGTERM: a checkpoint was saved and `sft train --resume` continues."""

    exit_code = 75  # EX_TEMPFAIL: try again later


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error (a bug: please report the traceback)",
    2: "wrong command-line usage (unknown option, missing argument)",
    ConfigError.exit_code: "configuration error",
    DataError.exit_code: "data error",
    RunDirError.exit_code: "run directory error",
    HubError.exit_code: "model handle or checkpoint error",
    TrainingDiverged.exit_code: "training diverged (non-finite loss); the last good checkpoint is kept",
    ServeError.exit_code: "sft serve cannot listen (address in use or not allowed), or its model failed to load",
    ExportRefused.exit_code: "sft export refused an int8 model that lost more accuracy than export.max_accuracy_drop",
    TrainingInterrupted.exit_code: "training stopped by SIGINT/SIGTERM after saving a checkpoint; --resume continues",
    130: "interrupted by Ctrl-C (outside training, or a second one during it)",
}
