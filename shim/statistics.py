"""A frozen snapshot of the shim's counters, read by ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import attrs

from hydramesh.common.metrics import HistogramSnapshot


@attrs.frozen
class ShimStatistics:
    draining: bool
    ingress: dict[str, int]  # received, mapped, repeated, forwarded_*, answered, rejected_draining
    relayed: dict[str, int]  # RESULTs to ingress clients, by status
    drops: dict[tuple[str, str], int]  # (socket, reason) -> count; socket is "ingress" or "cluster"
    mappings: int  # live id mappings
    waiting: int  # mappings whose request the head is working on
    mapping_evictions: dict[str, int]  # expired, table_full, source_full
    rate_limited_sources: int  # token buckets held (sources seen recently)
    http_responses: dict[str, int]  # by status code
    http_in_flight: int
    images: int  # images returned over HTTP
    http_latency: HistogramSnapshot

    def count(self, name: str) -> int:
        return self.ingress.get(name, 0)

    def dropped(self, reason: str, socket: str = "ingress") -> int:
        return self.drops.get((socket, reason), 0)
