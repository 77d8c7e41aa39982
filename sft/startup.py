"""TensorFlow's start-up, without the notices its C++ side prints on every command.

Loading TensorFlow prints, from C++ before any Python logger exists (so
`TF_CPP_MIN_LOG_LEVEL` cannot reach them): absl's pre-initialisation banner,
oneDNN's round-off notice, and, on a machine without NVIDIA drivers, "could not
find cuda drivers" and a failed `cuInit`. None of them asks anything of a user.
`import_tensorflow` runs the import and the device probe with file descriptor
2 sent through a filter that passes on every line it does not know, so a real
error still shows. A user who sets `TF_CPP_MIN_LOG_LEVEL` gets TensorFlow's
output as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys


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


def import_tensorflow(load=None) -> None:
    """Import TensorFlow and probe its devices once, keeping the start-up notices off stderr.

    While TensorFlow loads, fd 2 is a pipe to a small filter process that
    passes every other line on to the real stderr once the pipe closes: when
    the import ends, or when it kills the process (a CPU without the
    instructions the wheel needs aborts it), whose last words then still show.
    `load` stands in for the import in tests.
    """
    global _loaded
    if _loaded or "tensorflow" in sys.modules:
        _loaded = True
        return
    load = load or _load_tensorflow
    if not os.environ.get("SFT_QUIET_TENSORFLOW"):  # the user's own TF_CPP_MIN_LOG_LEVEL (sft/__init__.py)
        load()
        _loaded = True
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    try:
        quiet = subprocess.Popen([sys.executable, "-c", _FILTER], stdin=read_end)  # its stderr is ours
    except OSError:  # no process to spare: TensorFlow speaks as it always does
        os.close(read_end)
        os.close(write_end)
        load()
        _loaded = True
        return
    os.close(read_end)
    saved = os.dup(2)
    try:
        os.dup2(write_end, 2)
        os.close(write_end)
        load()
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer closes: the filter prints what it holds, and ends
        os.close(saved)
        try:
            quiet.wait(timeout=10)
        except subprocess.TimeoutExpired:  # something still holds the pipe open: never wait on it
            quiet.kill()
    _loaded = True


def _load_tensorflow() -> None:
    import tensorflow as tf

    tf.config.list_physical_devices("GPU")  # CUDA's probe, and its complaint, happen here


_FILTER = ("import sys; from sft.startup import filter_notices; "
           "sys.stderr.write(filter_notices(sys.stdin.buffer.read().decode('utf-8', 'replace')))")


def filter_notices(text: str) -> str:
    """`text` without TensorFlow's start-up notices; every other line as it was."""
    lines = text.splitlines(keepends=True)
    no_driver = any(_NOTICES[2].match(line) for line in lines)
    return "".join(line for line in lines
                   if not any(n.match(line) for n in _NOTICES) and not (no_driver and _NO_DRIVER.match(line)))
