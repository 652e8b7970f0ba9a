"""``POST /v1/images/generations`` without HTTP: the OpenAI request body
decoded and validated, and its ``n`` images fanned out over the cluster.

The body is read as strictly as a TASK (unknown fields are an error naming
them), with the OpenAI fields that have no meaning here accepted and
ignored. Each of the ``n`` images is a task of its own with its own seed:
``seed``, ``seed + 1``, … when a seed is given, else consecutive seeds from a
random start. All tasks run at once on one shared cluster client; the first
error ends the request and cancels the tasks still running.
"""

from __future__ import annotations

import random
import re
from typing import Any, Protocol

import attrs
import trio

from hydramesh.client.cluster import ClusterError
from hydramesh.common.chunking import Image
from hydramesh.common.errors import BadPayload, InvalidRequest
from hydramesh.common.jsonfields import Fields, load_object
from hydramesh.common.task import DEFAULT_LIMITS, MAX_SEED, FORMATS, GenerateRequest, Limits, task_from_json

from .api_errors import OPENAI_PARAM, ApiError, from_cluster

RESPONSE_FORMATS = ("b64_json", "url")
# OpenAI fields accepted for compatibility and ignored: they select options
# of OpenAI's own models that a diffusers pipeline does not have.
IGNORED_FIELDS = ("quality", "style", "moderation", "background", "output_compression")
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")


@attrs.frozen
class ImagesRequest:
    """A validated OpenAI images request; ``template`` holds the TASK fields."""

    template: GenerateRequest  # id and seed are filled in per image
    n: int = 1
    response_format: str = "b64_json"
    user: str | None = None

    @property
    def model(self) -> str | None:
        return self.template.model

    def tasks(self, ids: list[str], rng: random.Random) -> list[GenerateRequest]:
        """One TASK per image, each with its own id and seed."""
        base = self.template.seed if self.template.seed is not None else rng.randint(0, MAX_SEED)
        return [attrs.evolve(self.template, id=ids[i], seed=(base + i) % (MAX_SEED + 1)) for i in range(self.n)]


def parse_images_request(body: bytes, *, max_images: int, limits: Limits = DEFAULT_LIMITS) -> ImagesRequest:
    """Decode and validate a request body; raise :class:`ApiError` (400)."""
    try:
        obj = load_object(body, "request")
    except BadPayload as exc:
        raise ApiError(400, f"the request body must be a JSON object: {exc}", code="invalid") from None
    fields = Fields(obj)
    try:
        n = fields.integer("n", lo=1, hi=max_images, default=1)
        size = fields.string("size", max_len=16, default="auto")
        response_format = fields.choice("response_format", RESPONSE_FORMATS, default="b64_json")
        output_format = fields.choice("output_format", FORMATS, default="png")
        user = fields.string("user", max_len=256, default=None)
        if fields.raw("stream", default=False) is not False:
            raise fields.error("stream", "streaming is not supported; omit it or send false")
        if fields.raw("partial_images", default=0) != 0:
            raise fields.error("partial_images", "partial images are not supported; omit it or send 0")
        for name in IGNORED_FIELDS:
            fields.raw(name, default=None)
        task: dict[str, Any] = {"id": "x", "format": output_format}
        for name in ("prompt", "model", "negative_prompt", "steps", "guidance", "seed"):
            value = fields.raw(name, default=None)
            if value is not None:
                task[name] = value
        if size != "auto":
            match = _SIZE.fullmatch(size)
            if match is None:
                raise fields.error("size", f"must look like 512x512 (WIDTHxHEIGHT) or auto, got {size!r}")
            task["width"], task["height"] = int(match[1]), int(match[2])
        fields.finish()
        template = task_from_json(task, limits)
    except InvalidRequest as exc:
        param = OPENAI_PARAM.get(exc.field, exc.field)
        detail = exc.detail if param == exc.field else f"{exc.field} {exc.detail}"
        raise ApiError(400, f"{param}: {detail}", code="invalid", param=param) from None
    assert isinstance(template, GenerateRequest)
    return ImagesRequest(template, n, response_format, user)


class Cluster(Protocol):
    """What the fan-out needs of :class:`hydramesh.client.cluster.ClusterClient`."""

    async def generate(self, request: GenerateRequest, *, timeout: float, retry_busy: bool) -> Image: ...

    async def cancel(self, request_id: str) -> None: ...


async def generate_images(cluster: Cluster, tasks: list[GenerateRequest], *, timeout: float, model: str | None) -> list[Image]:
    """Run every task at once; return the images in order or raise
    :class:`ApiError` for the first failure (the rest are cancelled).

    ``busy`` is passed back at once (HTTP 429) rather than waited out: the
    HTTP client decides whether to retry. If the caller is cancelled (the
    HTTP client hung up), the tasks still running are cancelled at the head.
    """
    images: list[Image | None] = [None] * len(tasks)
    errors: list[ClusterError] = []

    async def one(index: int, request: GenerateRequest, scope: trio.CancelScope) -> None:
        try:
            images[index] = await cluster.generate(request, timeout=timeout, retry_busy=False)
        except ClusterError as exc:
            errors.append(exc)
            scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            for index, request in enumerate(tasks):
                nursery.start_soon(one, index, request, nursery.cancel_scope)
    finally:
        with trio.CancelScope(shield=True):
            # A task that failed needs no cancel, but one that ran into the
            # client's own deadline may still be queued: cancel whatever has
            # no image (a cancel for a finished id is answered harmlessly).
            for request, image in zip(tasks, images):
                if image is None:
                    await cluster.cancel(request.id)
    if errors:
        first = errors[0]
        raise from_cluster(first.code, first.message, field=first.field, retry_after=first.retry_after, model=model)
    return [image for image in images if image is not None]
