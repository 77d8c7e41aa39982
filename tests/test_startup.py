"""TensorFlow's C++ start-up notices stay off stderr; anything else it prints still shows."""

import os
import subprocess
import sys

from sft.startup import filter_notices

# As TensorFlow 2.21 prints them on a machine without NVIDIA drivers.
NOTICES = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796401672.855766    2348 port.cc:153] oneDNN custom operations are on. You may see slightly different \
numerical results due to floating-point round-off errors from different computation orders. To turn them off, set \
the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796401672.856097    2348 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be \
used.
I0000 00:00:1796401672.896879    2348 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available \
CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate \
compiler flags.
E0000 00:00:1796401676.369577    2348 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call \
to cuInit: UNKNOWN ERROR (303)
"""


def test_the_start_up_notices_are_dropped_and_other_lines_kept():
    other = "E0000 00:00:1796401676.4    2348 op_kernel.cc:1800] OP_REQUIRES failed: out of memory\n"
    assert filter_notices(NOTICES) == ""
    assert filter_notices(NOTICES + other + "a line of the user's own\n") == other + "a line of the user's own\n"


def test_a_failed_cuinit_shows_where_drivers_exist():
    cuinit = NOTICES.splitlines(keepends=True)[-1]
    assert filter_notices(cuinit) == cuinit  # no "could not find cuda drivers": a real GPU failed


def test_a_command_that_loads_tensorflow_prints_no_start_up_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SFT_QUIET_TENSORFLOW")}
    quiet = _fetch(env)
    assert quiet.returncode == 0 and quiet.stdout.strip().endswith("tiny-random")
    assert filter_notices(quiet.stderr) == quiet.stderr, quiet.stderr  # none of the known notices got through
    # A user's own log level is theirs: TensorFlow then prints as it always does.
    loud = _fetch(env | {"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert loud.returncode == 0 and filter_notices(loud.stderr) != loud.stderr


def _fetch(env):
    return subprocess.run([sys.executable, "-m", "sft", "hub", "fetch", "bundled:tiny-random"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_what_tensorflow_says_as_it_dies_at_start_up_still_shows():
    # A CPU without the instructions the wheel was built for: TensorFlow says so, then aborts.
    code = (
        "import os\n"
        "from sft import startup\n"
        "def dying():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "    os.write(2, b'F0000 00:00:1.0 1 cpu_feature_guard.cc:1] This TensorFlow binary needs AVX\\n')\n"
        "    os.abort()\n"
        "startup.import_tensorflow(load=dying)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "SFT_QUIET_TENSORFLOW")}
    died = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert died.returncode != 0
    assert "This TensorFlow binary needs AVX" in died.stderr and "absl::InitializeLog" not in died.stderr
