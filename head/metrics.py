"""The head's Prometheus metrics, rendered from a statistics snapshot."""

from __future__ import annotations

from hydramesh.common.metrics import Exposition

from .statistics import HeadStatistics


def render(stats: HeadStatistics) -> str:
    out = Exposition("hydramesh_head")
    out.gauge("workers", "Live workers", len(stats.workers))
    out.gauge("queue_depth", "Tasks waiting for a worker", stats.queue_depth)
    out.gauge("in_flight", "Tasks leased to a worker", stats.in_flight)
    out.gauge("results_cached", "Finished results kept for repeats", stats.results_cached)
    for name in ("admitted", "dispatched", "redispatched", "completed", "failed", "rejected_busy", "duplicates", "cache_hits"):
        out.counter(name, f"Tasks {name.replace('_', ' ')}", stats.count(name))
    out.counter("failures", "Failed tasks by error code", [({"code": k}, v) for k, v in sorted(stats.failures.items())])
    out.counter("drops", "Datagrams or payloads dropped, by reason", [({"reason": k}, v) for k, v in sorted(stats.drops.items())])
    out.histogram("task_seconds", "Admission to complete result", stats.latency)
    out.gauge("worker_capacity", "Slots a worker offers", [({"worker": w.id}, w.capacity) for w in stats.workers])
    out.gauge("worker_assigned", "Tasks leased to a worker", [({"worker": w.id}, w.assigned) for w in stats.workers])
    out.counter("worker_dispatched", "Tasks dispatched to a worker", [({"worker": w.id}, w.dispatched) for w in stats.workers])
    out.counter("worker_completed", "Tasks a worker completed", [({"worker": w.id}, w.completed) for w in stats.workers])
    return out.render()
