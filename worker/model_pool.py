"""The models a worker serves, and the few it keeps in memory.

Every configured model is advertised; at most ``max_loaded`` are resident at
once. Asking for one that is not resident loads it, evicting the least
recently used. While a model loads it is advertised as ``loading`` (the head
sends it no work); a model that fails to load is advertised as ``failed``.

``acquire`` runs on the inference thread; ``states`` is read by the event
loop for heartbeats. The thread only ever replaces dictionary values and
moves keys, which the GIL makes safe to read concurrently.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from hydramesh.common.heartbeat import ModelState

from .backends.base import UnknownModel
from .models import ModelSource


class ModelUnavailable(UnknownModel):
    """The model is served here but could not be loaded."""


@attrs.define(eq=False)
class ModelPool:
    sources: tuple[ModelSource, ...]
    max_loaded: int
    load: Callable[[ModelSource], Any]
    release_memory: Callable[[], None] = lambda: None  # after an eviction dropped its reference
    _loaded: OrderedDict[str, Any] = attrs.Factory(OrderedDict)
    _states: dict[str, str] = attrs.field(init=False)
    errors: dict[str, str] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        if self.max_loaded < 1:
            raise ValueError("max_loaded must be at least 1")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"two models share a name: {names}")
        self._states = {name: "ready" for name in names}

    @property
    def default(self) -> str:
        return self.sources[0].name

    def names(self) -> list[str]:
        return [s.name for s in self.sources]

    def states(self) -> tuple[ModelState, ...]:
        return tuple(ModelState(s.name, self._states[s.name], s.name in self._loaded) for s in self.sources)

    def loaded(self) -> list[str]:
        return list(self._loaded)

    def acquire(self, name: str) -> Any:
        """The pipeline for ``name``, loading it if needed (blocking)."""
        pipeline = self._loaded.get(name)
        if pipeline is not None:
            self._loaded.move_to_end(name)
            return pipeline
        source = next((s for s in self.sources if s.name == name), None)
        if source is None:
            raise UnknownModel(f"this worker serves {', '.join(self.names())}, not {name!r}")
        if self._states[name] == "failed":
            raise ModelUnavailable(f"model {name!r} failed to load: {self.errors.get(name, 'unknown error')}")
        while len(self._loaded) >= self.max_loaded:
            self._loaded.popitem(last=False)
            self.release_memory()
        self._states[name] = "loading"
        try:
            pipeline = self.load(source)
        except Exception as exc:
            self._states[name] = "failed"
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            raise ModelUnavailable(f"model {name!r} failed to load: {self.errors[name]}") from exc
        self._loaded[name] = pipeline
        self._states[name] = "ready"
        return pipeline
