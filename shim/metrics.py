"""The shim's Prometheus metrics, rendered from a statistics snapshot."""

from __future__ import annotations

from hydramesh.common.metrics import Exposition

from .statistics import ShimStatistics


def render(stats: ShimStatistics) -> str:
    out = Exposition("hydramesh_shim")
    out.gauge("draining", "1 while the shim refuses new work", int(stats.draining))
    out.counter("ingress_datagrams", "Datagrams received on the UDP ingress", stats.count("received"))
    for name in ("mapped", "repeated", "forwarded_generate", "forwarded_cancel", "forwarded_resend", "answered", "rejected_draining"):
        out.counter(f"ingress_{name}", f"Ingress requests {name.replace('_', ' ')}", stats.count(name))
    out.counter("relayed", "RESULTs relayed to ingress clients, by status", [({"status": k}, v) for k, v in sorted(stats.relayed.items())])
    out.counter(
        "drops",
        "Datagrams dropped or refused, by socket and reason",
        [({"socket": socket, "reason": reason}, v) for (socket, reason), v in sorted(stats.drops.items())],
    )
    out.gauge("mappings", "Live id mappings of ingress requests", stats.mappings)
    out.gauge("mappings_waiting", "Ingress requests the head is working on", stats.waiting)
    out.counter("mapping_evictions", "Id mappings removed, by why", [({"why": k}, v) for k, v in sorted(stats.mapping_evictions.items())])
    out.gauge("rate_limit_sources", "Source addresses with a token bucket", stats.rate_limited_sources)
    out.counter("http_responses", "HTTP API responses, by status code", [({"code": k}, v) for k, v in sorted(stats.http_responses.items())])
    out.gauge("http_in_flight", "HTTP image requests waiting on the cluster", stats.http_in_flight)
    out.counter("images", "Images returned over HTTP", stats.images)
    out.histogram("http_request_seconds", "Successful image requests, arrival to response", stats.http_latency)
    return out.render()
