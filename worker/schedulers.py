"""Per-request sampler choice: protocol names onto diffusers scheduler classes.

A scheduler is built from the model's own scheduler config, so betas,
prediction type and timestep spacing stay what the model was trained with.
"""

from __future__ import annotations

from typing import Any

from hydramesh.common.task import SCHEDULERS

# name -> (diffusers class, overrides of the model's scheduler config)
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
assert set(SCHEDULER_CLASSES) == set(SCHEDULERS), "the protocol's list and this table must agree"


def make_scheduler(name: str, base_config: Any) -> Any:
    import diffusers

    class_name, overrides = SCHEDULER_CLASSES[name]
    return getattr(diffusers, class_name).from_config(base_config, **overrides)
