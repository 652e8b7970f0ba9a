"""PROTOCOL.md's hex dumps must be exactly what the codec produces."""

from pathlib import Path

import pytest

from hydramesh.common import wire
from hydramesh.common.chunking import Image, split
from hydramesh.common.errors import ErrorCode
from hydramesh.common.heartbeat import Heartbeat, ModelState, TaskProgress
from hydramesh.common.result import Failure, decode_result, encode_result
from hydramesh.common.task import CancelRequest, GenerateRequest, parse_task
from hydramesh.common.heartbeat import parse_heartbeat
from hydramesh.common.wire import MsgType

DOC = Path(__file__).resolve().parents[2] / "PROTOCOL.md"
TS = 1764806400000000


def hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:04x}  {' '.join(f'{b:02x}' for b in chunk):<47}  {ascii_}".rstrip())
    return "\n".join(lines)


def examples():
    image = Image.build(
        "job-1", bytes.fromhex("89504e470d0a1a0a"), mime="image/png", seed=42, worker="gpu-0", width=64, height=64,
        timings={"infer_s": 0.41},
    )
    beat = Heartbeat(
        "gpu-0", "9f2c41d07ab3", (ModelState("hydramesh-tiny"),), 8, 7, 0, (TaskProgress("job-1", 3, 8),), 24,
        device="cuda", dtype="float16", mem_free=80_000_000_000, version="0.1.0", backend="diffusers",
    )
    return {
        "task": wire.encode(MsgType.TASK, 1, TS, GenerateRequest("job-1", "a red fox", width=64, height=64, steps=8, seed=42).encode()),
        "heartbeat": wire.encode(MsgType.HEARTBEAT, 7, TS, beat.encode()),
        "ok": wire.encode(MsgType.RESULT, 12, TS, split(image)[0]),
        "busy": wire.encode(MsgType.RESULT, 3, TS, encode_result(Failure("job-1", ErrorCode.BUSY, "the head's queue is full", retry_after=2.5))),
        "keyed": wire.encode(MsgType.TASK, 1, TS, CancelRequest("job-1").encode(), key=b"secret"),
    }


@pytest.mark.parametrize("name", ["task", "heartbeat", "ok", "busy", "keyed"])
def test_dump_is_in_the_document(name):
    text = "\n".join(line.rstrip() for line in DOC.read_text().splitlines())
    dump = hexdump(examples()[name])
    assert dump in text, f"PROTOCOL.md is out of date; expected this dump:\n{dump}"


def test_examples_decode():
    ex = examples()
    assert parse_task(wire.decode(ex["task"]).payload).prompt == "a red fox"
    assert parse_heartbeat(wire.decode(ex["heartbeat"]).payload).worker == "gpu-0"
    chunk, data = decode_result(wire.decode(ex["ok"]).payload)
    assert data == bytes.fromhex("89504e470d0a1a0a") and chunk.count == 1
    assert decode_result(wire.decode(ex["busy"]).payload)[0].retry_after == 2.5
    assert parse_task(wire.decode(ex["keyed"], key=b"secret").payload) == CancelRequest("job-1")
