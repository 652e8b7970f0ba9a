"""Prometheus text exposition from plain values, and a latency histogram.

Services keep their numbers in frozen ``statistics()`` snapshots; this module
only renders them, so there is no global registry to share between the
services that tests run in one process.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

import attrs

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@attrs.define(eq=False)
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = attrs.Factory(lambda self: [0] * (len(self.buckets) + 1), takes_self=True)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.buckets, tuple(self.counts), self.total, self.count)


@attrs.frozen
class HistogramSnapshot:
    buckets: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int

    def quantile(self, q: float) -> float | None:
        """Upper bucket bound holding the q-quantile (None when empty)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for bound, n in zip(self.buckets + (float("inf"),), self.counts):
            seen += n
            if seen >= rank:
                return bound
        return float("inf")  # pragma: no cover


Labels = Mapping[str, str]


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


@attrs.define(eq=False)
class Exposition:
    """Accumulates metric families and renders Prometheus text format 0.0.4."""

    prefix: str
    _lines: list[str] = attrs.Factory(list)

    def _family(self, name: str, kind: str, help_text: str) -> str:
        full = f"{self.prefix}_{name}"
        self._lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
        return full

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels | None, float]] | float) -> None:
        self._samples(self._family(name, "gauge", help_text), samples)

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels | None, float]] | float) -> None:
        self._samples(self._family(f"{name}_total", "counter", help_text), samples)

    def _samples(self, full: str, samples: Iterable[tuple[Labels | None, float]] | float) -> None:
        if isinstance(samples, (int, float)):
            samples = [(None, samples)]
        self._lines += [f"{full}{_labels(labels)} {_number(value)}" for labels, value in samples]

    def histogram(self, name: str, help_text: str, snap: HistogramSnapshot, labels: Labels | None = None) -> None:
        full = self._family(name, "histogram", help_text)
        running = 0
        for bound, n in zip(snap.buckets + (float("inf"),), snap.counts):
            running += n
            le = "+Inf" if bound == float("inf") else _number(bound)
            self._lines.append(f"{full}_bucket{_labels({**(labels or {}), 'le': le})} {running}")
        self._lines.append(f"{full}_sum{_labels(labels)} {_number(snap.total)}")
        self._lines.append(f"{full}_count{_labels(labels)} {snap.count}")

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
