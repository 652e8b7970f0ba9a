"""The OpenAI-compatible HTTP API (a Starlette app on hypercorn's Trio worker).

    POST /v1/images/generations   prompt, n, size, response_format, model, user, output_format
                                  (+ negative_prompt, steps, guidance, seed)
    GET  /v1/models               the models the cluster serves
    GET  /v1/models/{model}
    GET  /healthz                 liveness and drain state
    GET  /metrics                 Prometheus text

Every error has the OpenAI shape (see :mod:`.api_errors`). Each request is
a Trio task; it waits on the shared cluster client without blocking any
other. A client that hangs up cancels its tasks at the head.
"""

from __future__ import annotations

import base64
import collections
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import structlog
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hydramesh.common.metrics import Histogram
from hydramesh.common.task import DEFAULT_LIMITS, Limits
from hydramesh.runtime.groups import single_exception

from .api_errors import ApiError
from .auth import ApiKeys
from .images import Cluster, generate_images, parse_images_request
from .limits import AllowList, RateLimiter

MAX_BODY = 256 << 10  # a valid body is a few KiB at most
DRAIN_RETRY_AFTER = 5.0


@attrs.define(eq=False)
class HttpFront:
    """The state the HTTP handlers share: the cluster client, the edge's
    protections, and counters for ``/metrics``."""

    cluster: Cluster
    new_id: Callable[[], str]
    list_models: Callable[[], Awaitable[list[str]]]
    api_keys: ApiKeys = ApiKeys()
    allow: AllowList = AllowList()
    limiter: RateLimiter = attrs.Factory(lambda: RateLimiter(0.0, 1))
    max_images: int = 4
    timeout: float = 300.0
    limits: Limits = DEFAULT_LIMITS
    rng: random.Random = attrs.Factory(random.Random)
    log: Any = attrs.Factory(structlog.get_logger)
    draining: bool = False
    in_flight: int = 0
    images: int = 0
    responses: collections.Counter[str] = attrs.Factory(collections.Counter)  # by status code
    latency: Histogram = attrs.Factory(Histogram)  # successful image requests

    def admit(self, request: Request, *, api: bool) -> None:
        """The edge's checks, in order: network, key, rate, drain."""
        host = request.client.host if request.client else ""
        if not self.allow.permits(host):
            raise ApiError(403, "this address is not allowed to use the API", code="forbidden")
        if not api:
            return
        if not self.api_keys.authorizes(request.headers.get("authorization")):
            raise ApiError(401, "a valid API key is required: Authorization: Bearer KEY", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        decision = self.limiter.take(host, trio.current_time())
        if not decision.allowed:
            raise ApiError(429, f"rate limit: at most {self.limiter.rate:g} requests/s from one address",
                           code="rate_limited", retry_after=decision.retry_after)
        if self.draining:
            raise ApiError(503, "the shim is shutting down", code="draining", retry_after=DRAIN_RETRY_AFTER)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes", code="invalid")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes", code="invalid")
    return bytes(body)


def image_entry(data: bytes, mime: str, response_format: str) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode("ascii")
    if response_format == "url":
        return {"url": f"data:{mime};base64,{encoded}", "revised_prompt": None}
    return {"b64_json": encoded, "revised_prompt": None}


class _ClientGone(Exception):
    pass


async def _generate_or_hang_up(request: Request, run: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``run()``; if the HTTP client disconnects first, cancel it and
    raise :class:`_ClientGone`."""
    outcome: list[Any] = []
    gone = False

    async def watch(scope: trio.CancelScope) -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        scope.cancel()

    with single_exception():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            outcome.append(await run())
            nursery.cancel_scope.cancel()
    if gone or not outcome:
        raise _ClientGone()
    return outcome[0]


def make_app(front: HttpFront, *, health: Callable[[], dict[str, Any]], metrics: Callable[[], str]) -> Starlette:
    async def generations(request: Request) -> Response:
        started = trio.current_time()
        front.admit(request, api=True)
        spec = parse_images_request(await read_body(request), max_images=front.max_images, limits=front.limits)
        tasks = spec.tasks([front.new_id() for _ in range(spec.n)], front.rng)
        log = front.log.bind(task_id=tasks[0].id, n=spec.n, user=spec.user)
        front.in_flight += 1
        try:
            images = await _generate_or_hang_up(
                request, lambda: generate_images(front.cluster, tasks, timeout=front.timeout, model=spec.model)
            )
        except ApiError as exc:
            log.info("images_failed", status=exc.status, code=exc.code, message=exc.message)
            raise
        except _ClientGone:
            log.info("images_abandoned", reason="the HTTP client disconnected")
            front.responses["client_closed"] += 1
            return Response(status_code=499)
        finally:
            front.in_flight -= 1
        front.images += len(images)
        elapsed = trio.current_time() - started
        front.latency.observe(elapsed)
        log.debug("images_generated", seconds=round(elapsed, 3), seeds=[i.info.seed for i in images])
        body = {"created": int(time.time()), "data": [image_entry(i.data, i.info.mime, spec.response_format) for i in images]}
        front.responses["200"] += 1
        return JSONResponse(body)

    async def models(request: Request) -> Response:
        front.admit(request, api=True)
        names = await _models(front)
        front.responses["200"] += 1
        return JSONResponse({"object": "list", "data": [_model_entry(name) for name in names]})

    async def model(request: Request) -> Response:
        front.admit(request, api=True)
        name = request.path_params["model"]
        if name not in await _models(front):
            raise ApiError(404, f"the cluster serves no model {name!r}", code="unknown_model", param="model")
        front.responses["200"] += 1
        return JSONResponse(_model_entry(name))

    async def healthz(request: Request) -> Response:
        front.admit(request, api=False)
        body = health()
        return JSONResponse(body, status_code=503 if body.get("status") == "draining" else 200)

    async def metrics_endpoint(request: Request) -> Response:
        front.admit(request, api=False)
        return PlainTextResponse(metrics(), media_type="text/plain; version=0.0.4")

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        front.responses[str(exc.status)] += 1
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return await api_error(request, ApiError(exc.status_code, message, code=code, headers=dict(exc.headers or {})))

    async def server_error(request: Request, exc: Exception) -> Response:
        front.log.exception("http_handler_failed", path=request.url.path)
        front.responses["500"] += 1
        return ApiError(500, "internal error in the shim", code="internal").response()

    return Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model:path}", model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
    )


async def _models(front: HttpFront) -> list[str]:
    try:
        return await front.list_models()
    except (OSError, ValueError) as exc:
        raise ApiError(503, f"cannot learn the cluster's models from the head: {exc}", code="head_unreachable", retry_after=5.0) from None


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "hydramesh"}
