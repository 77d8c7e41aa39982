"""What this machine can compute fast, and the precision `runtime.precision: auto` picks from it.

Mixed precision pays only where the hardware has 16-bit matrix units: AMX or
AVX512-BF16 on a CPU (bfloat16), tensor cores on an NVIDIA GPU (float16,
compute capability 7.0 and up). Elsewhere it is at best emulated, and TensorFlow's
oneDNN pass does not rewrite a CPU graph at all without AVX-512, so `auto`
keeps float32 there. The choice is a pure function of a `Hardware` value, so
tests can ask it about machines they do not run on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sft.errors import ConfigError

# CPU flags as Linux spells them in /proc/cpuinfo.
BFLOAT16_UNITS = ("amx_bf16", "avx512_bf16")
# oneDNN's bfloat16 rewrite runs where TensorFlow's IsBF16SupportedByOneDNNOnThisCPU() holds: without
# these it leaves the graph in float32; with them but without BFLOAT16_UNITS it emulates (slower).
BFLOAT16_REWRITE = ("avx512f", "avx_ne_convert")
TENSOR_CORES = (7, 0)  # Volta


@dataclass(frozen=True)
class Hardware:
    cpu_flags: frozenset[str]
    # (name, compute capability) of each visible NVIDIA GPU.
    gpus: tuple[tuple[str, tuple[int, int]], ...] = ()

    def describe_cpu(self) -> str:
        units = [f.upper().replace("_", "-") for f in BFLOAT16_UNITS if f in self.cpu_flags]
        return f"a CPU with {' and '.join(units)}" if units else "a CPU with neither AMX nor AVX512-BF16"


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # float32, mixed_bfloat16 or mixed_float16
    reason: str


def cores() -> int:
    """The CPU cores this process may run on (a container's or `taskset`'s share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def detect() -> Hardware:
    """This machine: CPU flags from /proc/cpuinfo, GPUs as TensorFlow sees them."""
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append((details.get("device_name", device.name), tuple(details.get("compute_capability", (0, 0)))))
    return Hardware(cpu_flags=_cpu_flags(), gpus=tuple(gpus))


def inference_in_bfloat16(requested: str, hardware: Hardware) -> bool:
    """Whether a trained run's forward pass runs its matmuls in bfloat16: where its
    runtime.precision (`auto` or mixed_bfloat16) meets a CPU with AMX or AVX512-BF16 and no GPU.
    Elsewhere it runs in float32, whatever machine it was trained on."""
    bf16_units = any(f in hardware.cpu_flags for f in BFLOAT16_UNITS)
    return requested in ("auto", "mixed_bfloat16") and bf16_units and not hardware.gpus


def choose_precision(requested: str, hardware: Hardware) -> PrecisionChoice:
    """`auto` by the hardware; an explicit setting is kept, or refused where it would do nothing."""
    gpu = hardware.gpus[0] if hardware.gpus else None
    bf16_units = any(f in hardware.cpu_flags for f in BFLOAT16_UNITS)
    if requested == "auto":
        if gpu and gpu[1] >= TENSOR_CORES:
            return PrecisionChoice("mixed_float16", f"{gpu[0]} has tensor cores (compute capability "
                                                    f"{gpu[1][0]}.{gpu[1][1]}): float16 with loss scaling")
        if gpu:
            return PrecisionChoice("float32", f"{gpu[0]} has no tensor cores (compute capability "
                                              f"{gpu[1][0]}.{gpu[1][1]})")
        if bf16_units:
            return PrecisionChoice("mixed_bfloat16", f"{hardware.describe_cpu()}: bfloat16 matmuls")
        return PrecisionChoice("float32", f"{hardware.describe_cpu()}: 16-bit matmuls would not be faster")
    if requested == "mixed_float16" and not gpu:
        raise ConfigError("runtime.precision mixed_float16 needs an NVIDIA GPU and none is visible; "
                          "use auto or float32")
    if requested == "mixed_bfloat16" and gpu:
        raise ConfigError("runtime.precision mixed_bfloat16 rewrites CPU graphs (oneDNN) and would leave the GPU "
                          "in float32; use auto or mixed_float16")
    if requested == "mixed_bfloat16" and not any(f in hardware.cpu_flags for f in BFLOAT16_REWRITE):
        raise ConfigError("runtime.precision mixed_bfloat16 does nothing on this CPU (no AVX-512: TensorFlow "
                          "leaves the graph in float32); use auto or float32")
    if requested == "mixed_bfloat16" and not bf16_units:
        return PrecisionChoice("mixed_bfloat16", f"as configured; {hardware.describe_cpu()}, so oneDNN emulates "
                                                 "bfloat16, likely slower than float32")
    return PrecisionChoice(requested, "as configured")


def _cpu_flags() -> frozenset[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return frozenset()  # not Linux: no fast 16-bit units known, so auto stays float32
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):  # x86, Arm
            return frozenset(line.partition(":")[2].split())
    return frozenset()
