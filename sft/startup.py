"""TensorFlow's start-up, without the notices its C++ side prints on every command.

Loading TensorFlow prints, from C++ before any Python logger exists (so
`TF_CPP_MIN_LOG_LEVEL` cannot reach them): absl's pre-initialisation banner,
oneDNN's round-off notice, and, on a machine without NVIDIA drivers, "could not
find cuda drivers" and a failed `cuInit`. None of them asks anything of a user.
`import_tensorflow` runs the import and the device probe with file descriptor
2 redirected, then passes on every line it does not know, so a real error still
shows. A user who sets `TF_CPP_MIN_LOG_LEVEL` gets TensorFlow's output as it is.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile


_NOTICES = [
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
    re.compile(r"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"),
    re.compile(r"^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized"),
    re.compile(r"^To enable the following instructions: .* in other operations, rebuild TensorFlow"),
]
# Said only where no driver exists, which the cudart_stub notice has just told us.
_NO_DRIVER = re.compile(r"^E\d{4} [\d:. ]+\d+ cuda_(platform|driver|executor)\.cc:\d+\] failed call to cuInit")
_loaded = False


def import_tensorflow() -> None:
    """Import TensorFlow and probe its devices once, keeping the start-up notices off stderr."""
    global _loaded
    if _loaded or "tensorflow" in sys.modules:
        _loaded = True
        return
    if not os.environ.get("SFT_QUIET_TENSORFLOW"):  # the user's own TF_CPP_MIN_LOG_LEVEL (sft/__init__.py)
        import tensorflow  # noqa: F401
        _loaded = True
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA's probe, and its complaint, happen here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(filter_notices(captured.read().decode("utf-8", "replace")))
            sys.stderr.flush()
    _loaded = True


def filter_notices(text: str) -> str:
    """`text` without TensorFlow's start-up notices; every other line as it was."""
    lines = text.splitlines(keepends=True)
    no_driver = any(_NOTICES[2].match(line) for line in lines)
    return "".join(line for line in lines
                   if not any(n.match(line) for n in _NOTICES) and not (no_driver and _NO_DRIVER.match(line)))
