"""The worker's HTTP side: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from hydramesh.common.metrics import Exposition

if TYPE_CHECKING:
    from .service import Worker


def render_metrics(worker: Worker) -> str:
    stats = worker.statistics()
    out = Exposition("hydramesh_worker")
    labels = {"worker": stats.worker}
    out.gauge("ready", "1 when the worker takes work", [(labels, int(stats.state == "ready"))])
    out.gauge("queue_depth", "Requests waiting for the inference thread", [(labels, stats.queue)])
    out.gauge("running", "Requests in the current pipeline call", [(labels, stats.running)])
    out.counter("steps", "Denoising steps completed", [(labels, stats.steps_done)])
    for name in ("accepted", "completed", "failed", "rejected_busy", "resends"):
        out.counter(name, f"Requests {name.replace('_', ' ')}", [(labels, stats.count(name))])
    out.counter("drops", "Datagrams dropped, by reason", [({**labels, "reason": k}, v) for k, v in sorted(stats.drops.items())])
    return out.render()


def make_app(worker: Worker) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        status = 200 if worker.state in ("ready", "loading") else 503
        return JSONResponse({"status": worker.state, "worker": worker.worker_id}, status_code=status)

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(render_metrics(worker), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])
