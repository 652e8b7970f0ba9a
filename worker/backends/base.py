"""What a worker needs from an inference backend."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import attrs

from hydramesh.common.heartbeat import ModelState
from hydramesh.common.task import GenerateRequest

Address = tuple[Any, ...]


class JobCancelled(Exception):
    """The job's cancel flag was seen between denoising steps."""


class UnknownModel(Exception):
    """The request names a model this worker does not serve."""


@attrs.define(eq=False)
class Job:
    """One request as the worker holds it.

    ``cancelled`` is written by the event loop and read by the inference
    thread; ``step``/``steps`` the other way round. Plain attribute writes are
    atomic under the GIL, which is all this hand-off needs.
    """

    request: GenerateRequest
    reply_to: Address
    received: float
    attempt: int = 0  # the newest dispatch of this id seen (the head's fencing token)
    cancelled: bool = False
    running: bool = False
    step: int = 0
    steps: int = 0

    @property
    def id(self) -> str:
        return self.request.id


@attrs.frozen
class Rendered:
    data: bytes
    mime: str
    width: int
    height: int
    seed: int | None
    timings: dict[str, float] = attrs.field(factory=dict, eq=False, hash=False)


Outcome = Rendered | BaseException


class Backend(Protocol):
    name: str
    device: str
    dtype: str

    def models(self) -> tuple[ModelState, ...]:
        """What the worker advertises in heartbeats."""

    async def load(self) -> None:
        """Load (and warm up) the models to serve; called once at start."""

    def batch_key(self, request: GenerateRequest) -> Hashable:
        """Requests with equal keys may run in one pipeline call."""

    async def run(self, jobs: Sequence[Job], on_step: Any) -> list[Outcome]:
        """Render ``jobs`` (one batch): an image or an exception for each.

        ``on_step(job)`` is called from whichever thread runs the work each
        time a job's ``step`` advances. It must stay cheap and thread-safe.
        """

    def mem_free(self) -> int | None:
        """Free accelerator memory in bytes, if there is an accelerator."""
