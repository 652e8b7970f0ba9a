"""The head's HTTP side: ``/healthz``, ``/metrics``, ``/status`` and a status page."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from . import metrics

if TYPE_CHECKING:
    from .service import Head


def status_json(head: Head) -> dict:
    stats = head.statistics()
    body = attrs.asdict(stats, recurse=True)
    body["latency"] = {"count": stats.latency.count, "p50_s": stats.latency.quantile(0.5), "p99_s": stats.latency.quantile(0.99)}
    body["address"] = list(head.address[:2])
    return body


def _page(head: Head) -> str:
    stats = head.statistics()
    rows = "".join(
        f"<tr><td>{html.escape(w.id)}</td><td>{html.escape(w.address)}</td><td>{html.escape(w.state)}</td>"
        f"<td>{html.escape(', '.join(w.models))}</td><td>{w.assigned}/{w.capacity}</td><td>{w.dispatched}</td>"
        f"<td>{w.completed}</td><td>{html.escape(w.device)} {html.escape(w.dtype)}</td><td>{w.last_seen:.1f} s</td></tr>"
        for w in stats.workers
    )
    recent = "".join(
        f"<tr><td>{html.escape(t.id)}</td><td>{html.escape(t.status)}</td><td>{html.escape(t.worker)}</td>"
        f"<td>{html.escape(t.model or 'default')}</td><td>{t.seconds:.2f} s</td><td>{t.attempts}</td></tr>"
        for t in stats.recent
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>HydraMesh head</title><style>body{{font-family:system-ui,sans-serif;margin:2em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>HydraMesh head</h1>
<p>{len(stats.workers)} workers · queue {stats.queue_depth} · in flight {stats.in_flight} ·
completed {stats.count("completed")} · failed {stats.count("failed")} · re-dispatched {stats.count("redispatched")}</p>
<h2>Workers</h2><table><tr><th>id</th><th>address</th><th>state</th><th>models</th><th>load</th>
<th>dispatched</th><th>completed</th><th>device</th><th>last heartbeat</th></tr>{rows}</table>
<h2>Recent tasks</h2><table><tr><th>id</th><th>status</th><th>worker</th><th>model</th><th>time</th><th>attempts</th></tr>{recent}</table>
</body></html>"""


def make_app(head: Head) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "draining" if head.router.draining else "ok", "workers": len(head.router.registry.workers)})

    async def metrics_endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(metrics.render(head.statistics()), media_type="text/plain; version=0.0.4")

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(status_json(head))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(_page(head))

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
            Route("/status", status),
            Route("/", page),
        ]
    )
