"""Running a service as a process: logging, signals and a graceful drain.

SIGINT or SIGTERM starts the drain: the service stops taking work and gets
``drain_timeout`` seconds to finish what it holds; a second signal, or the
deadline, ends it at once. The process then exits 0 (DESIGN §1).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
import trio

from hydramesh.common.config import parse_config
from hydramesh.common.logging import configure_logging


class Drainable(Protocol):
    async def drain(self, timeout: float) -> None: ...


def read_key_file(path: Path | None) -> bytes | None:
    """The cluster key, stripped of a trailing newline; None when unset."""
    if path is None:
        return None
    key = path.read_bytes().rstrip(b"\r\n")
    if not key:
        raise SystemExit(f"cluster key file {path} is empty")
    return key


def node_name(configured: str) -> str:
    return configured or socket.gethostname()


async def run_until_signalled(
    serve: Callable[..., Awaitable[Any]],
    config: Any,
    *,
    drain_timeout: float,
    log: structlog.stdlib.BoundLogger,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            service: Drainable = await nursery.start(serve, config)
            first = await signals.__anext__()
            log.info("draining", signal=signal.Signals(first).name, timeout_s=drain_timeout)
            with trio.move_on_after(drain_timeout) as drain_scope:
                async with trio.open_nursery() as drain:
                    drain.start_soon(_cancel_on_signal, signals, drain.cancel_scope, log)
                    await service.drain(drain_timeout)
                    drain.cancel_scope.cancel()
            if drain_scope.cancelled_caught:
                log.warning("drain_deadline_passed")
            nursery.cancel_scope.cancel()
    log.info("stopped")


async def _cancel_on_signal(signals, scope: trio.CancelScope, log) -> None:
    await signals.__anext__()
    log.warning("second_signal_stopping_now")
    scope.cancel()


def service_main(
    service: str,
    config_class: type,
    serve: Callable[..., Awaitable[Any]],
    *,
    description: str,
    node: Callable[[Any], str],
    argv: Sequence[str] | None = None,
    drain_timeout: float = 30.0,
) -> None:
    """The ``main()`` of a service's console script: parse flags and
    environment, set up logging, serve until a signal, drain, exit 0."""
    config = parse_config(
        config_class,
        sys.argv[1:] if argv is None else argv,
        os.environ,
        prog=f"hydramesh-{service}",
        description=description,
    )
    log = configure_logging(service, node_name(node(config)), level=config.log_level, fmt=config.log_format)
    trio.run(lambda: run_until_signalled(serve, config, drain_timeout=drain_timeout, log=log))
