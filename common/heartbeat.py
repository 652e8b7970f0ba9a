"""HEARTBEAT payloads: how a worker tells the head what it is and what it holds."""

from __future__ import annotations

from typing import Any

import attrs

from .errors import BadPayload, InvalidRequest
from .jsonfields import Fields, dump_object, load_object
from .task import MAX_ID_LEN, PROTOCOL_VERSION

MODEL_STATES = ("ready", "loading", "failed")
WORKER_STATES = ("loading", "ready", "draining")
_MAX_NAME = 256
_MAX_LIST = 256


@attrs.frozen
class ModelState:
    name: str
    state: str = "ready"  # one of MODEL_STATES
    loaded: bool = True  # resident in memory now, as opposed to loadable on demand


@attrs.frozen
class TaskProgress:
    id: str
    step: int = 0
    steps: int = 0


@attrs.frozen
class Heartbeat:
    worker: str
    boot: str  # changes on every process start, so the head sees restarts
    models: tuple[ModelState, ...]
    capacity: int
    free: int
    queue: int
    in_flight: tuple[TaskProgress, ...] = ()
    progress: int = 0  # denoising steps completed since boot; grows while work moves
    state: str = "ready"
    device: str = "cpu"
    dtype: str = "float32"
    mem_free: int | None = None
    version: str = ""
    backend: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "worker": self.worker,
            "boot": self.boot,
            "state": self.state,
            "models": [{"name": m.name, "state": m.state, "loaded": m.loaded} for m in self.models],
            "capacity": self.capacity,
            "free": self.free,
            "queue": self.queue,
            "in_flight": [{"id": t.id, "step": t.step, "steps": t.steps} for t in self.in_flight],
            "progress": self.progress,
            "device": self.device,
            "dtype": self.dtype,
            "mem_free": self.mem_free,
            "version": self.version,
            "backend": self.backend,
        }

    def encode(self) -> bytes:
        return dump_object(self.to_json())


def _object_list(fields: Fields, name: str) -> list[Fields]:
    items = fields.raw(name, default=[])
    if not isinstance(items, list) or len(items) > _MAX_LIST:
        raise fields.error(name, f"must be a list of at most {_MAX_LIST} objects")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise fields.error(name, "items must be objects")
        out.append(Fields(item))
    return out


def parse_heartbeat(payload: bytes) -> Heartbeat:
    """Decode a heartbeat. Unknown fields are ignored, unlike in TASKs, so a
    newer worker can join an older head during a rolling upgrade."""
    obj = load_object(payload, "HEARTBEAT")
    fields = Fields(obj)
    try:
        fields.integer("v", lo=PROTOCOL_VERSION, hi=PROTOCOL_VERSION, default=PROTOCOL_VERSION)
        models = []
        for item in _object_list(fields, "models"):
            models.append(
                ModelState(
                    name=item.string("name", max_len=_MAX_NAME, min_len=1),
                    state=item.choice("state", MODEL_STATES, default="ready"),
                    loaded=item.boolean("loaded", default=True),
                )
            )
        in_flight = []
        for item in _object_list(fields, "in_flight"):
            in_flight.append(
                TaskProgress(
                    id=item.string("id", max_len=MAX_ID_LEN, min_len=1),
                    step=item.integer("step", lo=0, hi=1 << 20, default=0),
                    steps=item.integer("steps", lo=0, hi=1 << 20, default=0),
                )
            )
        beat = Heartbeat(
            worker=fields.string("worker", max_len=_MAX_NAME, min_len=1),
            boot=fields.string("boot", max_len=64, min_len=1),
            models=tuple(models),
            capacity=fields.integer("capacity", lo=0, hi=1 << 16),
            free=fields.integer("free", lo=0, hi=1 << 16),
            queue=fields.integer("queue", lo=0, hi=1 << 20),
            in_flight=tuple(in_flight),
            progress=fields.integer("progress", lo=0, hi=1 << 62, default=0),
            state=fields.choice("state", WORKER_STATES, default="ready"),
            device=fields.string("device", max_len=64, default="cpu"),
            dtype=fields.string("dtype", max_len=32, default="float32"),
            mem_free=fields.integer("mem_free", lo=0, hi=1 << 62, default=None),
            version=fields.string("version", max_len=64, default=""),
            backend=fields.string("backend", max_len=64, default=""),
        )
    except InvalidRequest as exc:
        # A heartbeat has no requester to answer: it is simply a bad payload.
        raise BadPayload(f"HEARTBEAT {exc}") from None
    return beat
