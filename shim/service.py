"""The shim as a Trio service (DESIGN §1): the public edge of a cluster.

    async with trio.open_nursery() as nursery:
        shim = await nursery.start(serve, ShimConfig(ingress_port=0, node_target="127.0.0.1:7777"))
        shim.address       # the bound UDP ingress
        shim.http_address  # the bound HTTP API, or None

Three sockets, one Trio program:

* the **ingress** (``--ingress-port``): bare TASK JSON in, bare RESULT
  payloads out, driven through the I/O-free :class:`~.ingress.Ingress`;
* the **cluster socket** (``--cluster-port``): DCF TASKs to the head for
  ingress clients and the head's RESULTs back; only the head may answer;
* the **HTTP API** (``--http-port``), whose requests share one
  :class:`~hydramesh.client.cluster.ClusterClient` (a DCF socket of its own)
  with its retries, chunk re-requests and deadlines.

Receive loops hand datagrams to the state machine synchronously and flush
its outbox with non-blocking sends; a timer task expires id mappings and
token buckets. Time is ``trio.current_time()``.
"""

from __future__ import annotations

import collections
import functools
import math
import random
import socket
from typing import Any

import attrs
import structlog
import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.common.wire import Datagram, MsgType
from hydramesh.runtime.http import serve_http
from hydramesh.runtime.lifecycle import read_key_file
from hydramesh.runtime.timer import DeadlineTimer
from hydramesh.runtime.udp import Address, DcfEndpoint

from . import metrics
from .auth import ApiKeys, parse_api_keys
from .config import ShimConfig
from .head_status import list_models
from .idmap import IdMap, new_boot
from .ingress import Ingress, ToHead
from .limits import AllowList, RateLimiter
from .openai_api import HttpFront, make_app
from .statistics import ShimStatistics


@attrs.define(eq=False)
class Shim:
    config: ShimConfig
    ingress_endpoint: DcfEndpoint  # bare datagrams: serve_raw / send_raw
    cluster_endpoint: DcfEndpoint  # DCF to and from the head
    head: Address
    ingress: Ingress
    front: HttpFront
    log: Any
    http_address: Address | None = None
    cluster_drops: collections.Counter[str] = attrs.Factory(collections.Counter)
    timer: DeadlineTimer = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.timer = DeadlineTimer(self._next_deadline, self._tick)

    @property
    def address(self) -> Address:
        """The UDP ingress's bound address."""
        return self.ingress_endpoint.address

    @property
    def cluster_address(self) -> Address:
        return self.cluster_endpoint.address

    # -- datagrams -------------------------------------------------------

    def _on_client(self, data: bytes, source: Address) -> None:
        self.ingress.handle_datagram(data, source, trio.current_time())
        self._flush()

    def _on_cluster(self, datagram: Datagram, sender: Address) -> None:
        if tuple(sender[:2]) != tuple(self.head[:2]):
            self.cluster_drops["not_from_head"] += 1
            return
        if datagram.msg_type is not MsgType.RESULT:
            self.cluster_drops["unexpected_type"] += 1
            return
        self.ingress.handle_result(datagram.payload, trio.current_time())
        self._flush()

    def _flush(self) -> None:
        outbox = self.ingress.outbox
        for out in outbox:
            if isinstance(out, ToHead):
                self.cluster_endpoint.send(MsgType.TASK, out.payload, self.head)
            else:
                self.ingress_endpoint.send_raw(out.payload, out.address)
        outbox.clear()
        self.timer.check()

    def _next_deadline(self) -> float:
        limiter = self.front.limiter
        http_next = limiter.next_prune() if limiter.enabled else math.inf
        return min(self.ingress.next_deadline(), http_next)

    def _tick(self, now: float) -> None:
        self.ingress.tick(now)
        self.front.limiter.prune(now)
        self._flush()

    # -- lifecycle --------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Refuse new requests (UDP ``busy``, HTTP 503) and wait for those in flight."""
        self.ingress.draining = True
        self.front.draining = True
        self.log.info("drain_started", udp=self.ingress.ids.waiting(), http=self.front.in_flight)
        with trio.move_on_after(timeout):
            while self.ingress.ids.waiting() or self.front.in_flight:
                await trio.sleep(0.05)
        self.log.info("drain_finished", abandoned_udp=self.ingress.ids.waiting(), abandoned_http=self.front.in_flight)

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.ingress.draining else "ok",
            "ingress": list(self.address[:2]),
            "node_target": list(self.head[:2]),
            "mappings": len(self.ingress.ids),
            "http_in_flight": self.front.in_flight,
        }

    def statistics(self) -> ShimStatistics:
        ingress, front = self.ingress, self.front
        drops: dict[tuple[str, str], int] = {}
        for side, counter in (
            ("ingress", ingress.drops),
            ("ingress", self.ingress_endpoint.drops),
            ("cluster", self.cluster_endpoint.drops),
            ("cluster", self.cluster_drops),
        ):
            for reason, count in counter.items():
                drops[(side, reason)] = drops.get((side, reason), 0) + count
        return ShimStatistics(
            draining=ingress.draining,
            ingress=dict(ingress.counts),
            relayed=dict(ingress.relayed),
            drops=drops,
            mappings=len(ingress.ids),
            waiting=ingress.ids.waiting(),
            mapping_evictions=dict(ingress.ids.evictions),
            rate_limited_sources=len(ingress.limiter),
            http_responses=dict(front.responses),
            http_in_flight=front.in_flight,
            images=front.images,
            http_latency=front.latency.snapshot(),
        )


async def resolve(host: str, port: int) -> Address:
    """A host name or address to a socket address (IPv4 preferred)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:  # pragma: no cover  (getaddrinfo raises instead)
        raise OSError(f"cannot resolve {host!r}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return tuple(infos[0][4])


def _id_source(boot: str, kind: str):
    counter = 0

    def new_id() -> str:
        nonlocal counter
        counter += 1
        return f"{kind}.{boot}.{counter:016x}"

    return new_id


async def serve(config: ShimConfig, *, task_status: trio.TaskStatus[Shim] = trio.TASK_STATUS_IGNORED) -> None:
    log = structlog.get_logger().bind(service="shim")
    key = read_key_file(config.cluster_key_file)
    api_keys = ApiKeys(parse_api_keys(config.api_key_file.read_text())) if config.api_key_file else ApiKeys()
    if config.api_key_file and not api_keys.required:
        raise SystemExit(f"API key file {config.api_key_file} holds no key")
    head = await resolve(*config.head_host_port)
    allow = AllowList.parse(config.allow)
    boot = new_boot()
    ingress_endpoint = DcfEndpoint.bind(config.host, config.ingress_port)
    try:
        cluster_host = "::" if ":" in head[0] else "0.0.0.0"
        cluster_endpoint = DcfEndpoint.bind(cluster_host, config.cluster_port, key=key)
        try:
            ingress = Ingress(
                IdMap(config.mapping_ttl, config.max_mappings, config.max_mappings_per_source, boot=boot),
                RateLimiter(config.rate, config.burst),
                allow,
                config.max_datagram,
            )
            async with ClusterClient.connect(head, key=key) as client:
                front = HttpFront(
                    client,
                    _id_source(boot, "http"),
                    functools.partial(list_models, config.status_url),
                    api_keys=api_keys,
                    allow=allow,
                    limiter=RateLimiter(config.http_rate, config.http_burst),
                    max_images=config.max_images,
                    timeout=config.request_timeout,
                    rng=random.Random(),
                    log=log,
                )
                shim = Shim(config, ingress_endpoint, cluster_endpoint, head, ingress, front, log)
                async with trio.open_nursery() as nursery:
                    await nursery.start(ingress_endpoint.serve_raw, shim._on_client)
                    await nursery.start(cluster_endpoint.serve, shim._on_cluster)
                    nursery.start_soon(shim.timer.run)
                    if config.http_port >= 0:
                        app = make_app(front, health=shim.health, metrics=lambda: metrics.render(shim.statistics()))
                        shim.http_address = await nursery.start(serve_http, app, config.http_host or config.host, config.http_port)
                    log.info(
                        "shim_listening",
                        ingress=list(shim.address[:2]),
                        node_target=list(head[:2]),
                        cluster=list(shim.cluster_address[:2]),
                        http=shim.http_address and list(shim.http_address),
                        api_keys=len(api_keys.keys),
                        allow=[str(n) for n in allow.networks],
                    )
                    task_status.started(shim)
        finally:
            cluster_endpoint.close()
    finally:
        ingress_endpoint.close()
