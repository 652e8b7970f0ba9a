"""Device, precision and offload decisions, on made-up machines."""

import pytest

from hydramesh.worker.devices import DeviceError, DeviceFacts, choose_device, choose_dtype, choose_offload, plan

GiB = 1 << 30
CPU = DeviceFacts()
NVIDIA = DeviceFacts(cuda=True, hip=False, name="H200", free_bytes=140 * GiB, total_bytes=141 * GiB)
ROCM = DeviceFacts(cuda=True, hip=True, name="MI300X", free_bytes=190 * GiB, total_bytes=192 * GiB)


@pytest.mark.parametrize(
    ("requested", "facts", "expected"),
    [
        ("auto", CPU, ("cpu", "cpu")),
        ("auto", NVIDIA, ("cuda", "cuda")),
        ("auto", ROCM, ("cuda", "rocm")),  # torch calls HIP devices "cuda" too
        ("cpu", NVIDIA, ("cpu", "cpu")),
        ("cuda", NVIDIA, ("cuda", "cuda")),
        ("rocm", ROCM, ("cuda", "rocm")),
    ],
)
def test_device(requested, facts, expected):
    assert choose_device(requested, facts) == expected


@pytest.mark.parametrize(("requested", "facts"), [("cuda", CPU), ("rocm", NVIDIA), ("cuda", ROCM)])
def test_impossible_devices_are_refused(requested, facts):
    with pytest.raises(DeviceError):
        choose_device(requested, facts)


def test_dtype_defaults_and_overrides():
    assert choose_dtype("auto", "cuda") == "float16"
    assert choose_dtype("auto", "cpu") == "float32"
    assert choose_dtype("bfloat16", "cuda") == "bfloat16"
    assert choose_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(DeviceError):
        choose_dtype("float16", "cpu")


@pytest.mark.parametrize(
    ("model_gib", "free_gib", "expected"),
    [
        (5, 24, "none"),  # SD 1.5 on a 24 GB card
        (7, 8, "model"),  # SDXL fp16 on an 8 GB card: the UNet fits, not all
        (7, 4, "sequential"),  # not even the UNet fits
        (7, 9.2, "none"),  # needs 7 × 1.3 = 9.1
    ],
)
def test_auto_offload_by_size(model_gib, free_gib, expected):
    assert choose_offload("auto", "cuda", int(model_gib * GiB), int(free_gib * GiB)) == expected


def test_offload_is_off_on_cpu_and_unknown_sizes_keep_the_model_on_the_gpu():
    assert choose_offload("sequential", "cpu", GiB, None) == "none"
    assert choose_offload("auto", "cuda", None, 8 * GiB) == "none"
    assert choose_offload("model", "cuda", GiB, 80 * GiB) == "model"


def test_plan_combines_the_choices():
    assert plan("auto", "auto", "auto", NVIDIA, 7 * GiB).offload == "none"
    small = DeviceFacts(cuda=True, free_bytes=7 * GiB)
    result = plan("auto", "auto", "auto", small, 7 * GiB)
    assert (result.device, result.kind, result.dtype, result.offload) == ("cuda", "cuda", "float16", "model")
