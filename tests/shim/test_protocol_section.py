"""PROTOCOL.md §6's hex dumps must be what the shim's ingress produces."""

from __future__ import annotations

import json
from pathlib import Path

from hydramesh.common import wire
from hydramesh.common.result import Accepted, decode_result, encode_result
from hydramesh.common.task import parse_task
from hydramesh.shim.idmap import IdMap
from hydramesh.shim.ingress import Ingress, ToClient, ToHead
from hydramesh.shim.limits import RateLimiter

from ..common.test_protocol_doc import TS, hexdump

DOC = Path(__file__).resolve().parents[2] / "PROTOCOL.md"
CLIENT = ("198.51.100.7", 40000)
REQUEST = b'{"id":"job-1","prompt":"a red fox","width":64,"height":64}'


def test_section_6_example_is_what_the_shim_does():
    ingress = Ingress(IdMap(300.0, 10, 10, boot="3f9c0a7d51e2b84c6d0f1a2b3c"), RateLimiter(0.0, 1))
    ingress.handle_datagram(REQUEST, CLIENT, 0.0)
    [task] = ingress.outbox
    assert isinstance(task, ToHead)
    ingress.outbox.clear()
    internal = parse_task(task.payload).id
    ingress.handle_result(encode_result(Accepted(internal)), 0.1)
    [answer] = ingress.outbox
    assert isinstance(answer, ToClient) and answer.address == CLIENT
    assert decode_result(answer.payload)[0] == Accepted("job-1")
    assert json.loads(REQUEST)["id"] == "job-1" and len(REQUEST) == 58 and len(answer.payload) == 42

    section = DOC.read_text().split("## 6.", 1)[1].split("## 7.", 1)[0]
    text = "\n".join(line.rstrip() for line in section.splitlines())
    for data in (REQUEST, wire.encode(wire.MsgType.TASK, 1, TS, task.payload), answer.payload):
        assert hexdump(data) in text, f"PROTOCOL.md §6 is out of date; expected:\n{hexdump(data)}"
