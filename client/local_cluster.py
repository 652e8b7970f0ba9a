"""A local cluster: a head, N workers and optionally a shim as separate OS
processes on loopback.

``hydramesh up`` and ``hydramesh demo`` use it. The supervisor restarts a
process that dies unexpectedly (with backoff), and on shutdown sends SIGTERM
to every child, waits for their graceful drain, and kills what is left.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import attrs
import structlog
import trio

log = structlog.get_logger()


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free right now on loopback (the OS picks it)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.frozen
class ClusterSpec:
    workers: int = 2
    backend: str = "diffusers"
    model_paths: tuple[str, ...] = ()
    models_dir: Path = Path("local-models")
    head_port: int = 7777
    http_port: int = 7780
    shim_port: int | None = None  # the shim's UDP ingress; None: no shim
    shim_http_port: int = 8080  # its OpenAI-compatible API (-1: none)
    shim_args: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()
    log_format: str = "json"
    log_level: str = "info"
    restart: bool = True  # restart children that die (tests of failure turn it off)


@attrs.define(eq=False)
class Child:
    name: str
    argv: list[str]
    process: trio.Process | None = None
    restarts: int = 0
    stopping: bool = False


@attrs.define(eq=False)
class LocalCluster:
    spec: ClusterSpec
    children: list[Child] = attrs.Factory(list)
    log_file: Path | None = None  # children's output goes here instead of the terminal

    @property
    def head_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.spec.head_port)

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.http_port}/status"

    @property
    def shim_address(self) -> tuple[str, int]:
        if self.spec.shim_port is None:
            raise ValueError("this cluster has no shim")
        return ("127.0.0.1", self.spec.shim_port)

    @property
    def shim_url(self) -> str:
        """The shim's HTTP API root (``…/v1`` is the OpenAI base URL)."""
        return f"http://127.0.0.1:{self.spec.shim_http_port}"

    def _argv(self) -> list[Child]:
        spec = self.spec
        common = ["--log-format", spec.log_format, "--log-level", spec.log_level]
        head = Child(
            "head",
            [sys.executable, "-m", "hydramesh.head", "--host", "127.0.0.1", "--port", str(spec.head_port),
             "--http-host", "127.0.0.1", "--http-port", str(spec.http_port), *common],
        )
        workers = []
        for i in range(spec.workers):
            argv = [sys.executable, "-m", "hydramesh.worker", "--head-ip", "127.0.0.1", "--head-port", str(spec.head_port),
                    "--host", "127.0.0.1", "--port", "0", "--http-port", "-1", "--backend", spec.backend,
                    "--worker-id", f"worker-{i}", "--models-dir", str(spec.models_dir), *common]
            for path in spec.model_paths:
                argv += ["--model-path", path]
            workers.append(Child(f"worker-{i}", argv + list(spec.worker_args)))
        if spec.shim_port is None:
            return [head, *workers]
        shim = Child(
            "shim",
            [sys.executable, "-m", "hydramesh.shim", "--host", "127.0.0.1", "--ingress-port", str(spec.shim_port),
             "--node-target", f"127.0.0.1:{spec.head_port}", "--http-port", str(spec.shim_http_port),
             "--head-status-url", self.status_url, *common, *spec.shim_args],
        )
        return [head, *workers, shim]

    async def run(self, *, task_status: trio.TaskStatus[LocalCluster] = trio.TASK_STATUS_IGNORED) -> None:
        """Start everything, report once all workers are ready, supervise
        until cancelled, then stop the children gracefully."""
        self.children = self._argv()
        output = self.log_file.open("ab") if self.log_file else None
        try:
            async with trio.open_nursery() as nursery:
                for child in self.children:
                    nursery.start_soon(self._supervise, child, output)
                await self.wait_ready(timeout=600)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.stop()
            if output:
                output.close()

    async def _supervise(self, child: Child, output) -> None:
        backoff = 0.5
        while not child.stopping:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            child.process = await trio.lowlevel.open_process(
                child.argv, stdout=output, stderr=subprocess.STDOUT if output else None, env=env
            )
            log.debug("child_started", child=child.name, pid=child.process.pid)
            code = await child.process.wait()
            if child.stopping or not self.spec.restart:
                return
            child.restarts += 1
            log.warning("child_exited", child=child.name, code=code, restart_in_s=backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def pid(self, name: str) -> int:
        for child in self.children:
            if child.name == name and child.process is not None:
                return child.process.pid
        raise KeyError(name)

    async def wait_ready(self, *, timeout: float) -> dict:
        """Poll the head's /status until every worker reports ready."""
        with trio.fail_after(timeout):
            while True:
                status = await trio.to_thread.run_sync(fetch_json, self.status_url)
                if status is not None:
                    ready = [w for w in status["workers"] if w["state"] == "ready"]
                    if len(ready) >= self.spec.workers and await self._shim_ready():
                        return status
                for child in self.children:
                    if child.restarts > 3:
                        raise RuntimeError(f"{child.name} keeps exiting; see its output above")
                await trio.sleep(0.2)

    async def _shim_ready(self) -> bool:
        if self.spec.shim_port is None or self.spec.shim_http_port < 0:
            return True
        return await trio.to_thread.run_sync(fetch_json, f"{self.shim_url}/healthz") is not None

    async def stop(self, grace: float = 30.0) -> None:
        for child in self.children:
            child.stopping = True
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace):
            for child in self.children:
                if child.process is not None:
                    await child.process.wait()
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                log.warning("child_killed", child=child.name)
                child.process.kill()
                await child.process.wait()


def fetch_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def describe(status: dict | None) -> Sequence[str]:
    if status is None:
        return ["  (the head's status page did not answer)"]
    lines = []
    for w in status["workers"]:
        load = f"{w['assigned']}/{w['capacity']}"
        lines.append(f"  {w['id']:<16} {w['state']:<9} {', '.join(w['models']):<28} load {load:<6} "
                     f"done {w['completed']:<5} {w['device']} {w['dtype']}  seen {w['last_seen']:.1f}s ago")
    if not lines:
        lines.append("  (no workers)")
    latency = status.get("latency", {})
    p50 = latency.get("p50_s")
    lines.append(
        f"  queue {status['queue_depth']}  in flight {status['in_flight']}  completed {status['counts'].get('completed', 0)}"
        f"  failed {status['counts'].get('failed', 0)}  p50 ≤ {p50 if p50 is not None and not math.isinf(p50) else '-'} s"
    )
    return lines
