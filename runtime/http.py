"""Serving an ASGI app on Trio with hypercorn, on a port that may be 0."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .udp import Address


async def serve_http(
    app, host: str, port: int, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``app`` until cancelled; report the bound ``(host, port)``."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(app, config, task_status=task_status))
        bound = binds[0].rsplit(":", 1)
        task_status.started((bound[0].removeprefix("http://").strip("[]"), int(bound[1])))
