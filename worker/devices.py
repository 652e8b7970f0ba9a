"""Choosing the device, precision and offload mode (DESIGN §4).

The decisions are pure functions of :class:`DeviceFacts`, so they are tested
with made-up machines; :func:`probe` reads the real facts from torch.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class DeviceFacts:
    cuda: bool = False  # torch.cuda.is_available(): NVIDIA, or AMD through HIP
    hip: bool = False  # torch built for ROCm
    name: str = "cpu"
    free_bytes: int | None = None
    total_bytes: int | None = None


@attrs.frozen
class DevicePlan:
    device: str  # what torch calls it: "cuda" or "cpu"
    kind: str  # what an operator calls it: "cuda", "rocm" or "cpu"
    dtype: str  # "float16", "bfloat16" or "float32"
    offload: str  # "none", "model" or "sequential"


class DeviceError(RuntimeError):
    pass


def choose_device(requested: str, facts: DeviceFacts) -> tuple[str, str]:
    gpu_kind = "rocm" if facts.hip else "cuda"
    if requested == "auto":
        return ("cuda", gpu_kind) if facts.cuda else ("cpu", "cpu")
    if requested == "cpu":
        return "cpu", "cpu"
    if not facts.cuda:
        raise DeviceError(f"--device {requested} asked for, but torch sees no GPU")
    if requested != gpu_kind:
        raise DeviceError(f"--device {requested} asked for, but this torch is built for {gpu_kind}")
    return "cuda", gpu_kind


def choose_dtype(requested: str, device: str) -> str:
    if requested != "auto":
        if device == "cpu" and requested == "float16":
            raise DeviceError("float16 on the CPU is unsupported by most kernels; use float32 or bfloat16")
        return requested
    return "float16" if device == "cuda" else "float32"


# Activations, the VAE decode and allocator slack need room beyond the weights.
_HEADROOM = 1.3


def choose_offload(requested: str, device: str, model_bytes: int | None, free_bytes: int | None) -> str:
    """``auto``: keep the whole model on the GPU if it fits, else move whole
    sub-models on demand (``model``), else stream layer by layer
    (``sequential``: slowest, smallest)."""
    if device == "cpu":
        return "none"
    if requested != "auto":
        return requested
    if model_bytes is None or free_bytes is None:
        return "none"
    if model_bytes * _HEADROOM <= free_bytes:
        return "none"
    # Model offload keeps the largest sub-model (the UNet, ~70% of the
    # weights) on the GPU at a time.
    if model_bytes * 0.7 * _HEADROOM <= free_bytes:
        return "model"
    return "sequential"


def plan(requested_device: str, requested_dtype: str, requested_offload: str, facts: DeviceFacts, model_bytes: int | None) -> DevicePlan:
    device, kind = choose_device(requested_device, facts)
    return DevicePlan(
        device,
        kind,
        choose_dtype(requested_dtype, device),
        choose_offload(requested_offload, device, model_bytes, facts.free_bytes),
    )


def probe() -> DeviceFacts:  # pragma: no cover - depends on the machine
    import torch

    if not torch.cuda.is_available():
        return DeviceFacts()
    free, total = torch.cuda.mem_get_info()
    return DeviceFacts(True, torch.version.hip is not None, torch.cuda.get_device_name(), free, total)
