"""The ingress relay as a state machine: datagrams in, outbox out, exact times."""

from __future__ import annotations

import json

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from hydramesh.common.chunking import Image, Reassembly, split
from hydramesh.common.errors import ErrorCode
from hydramesh.common.result import Accepted, Chunk, Failure, Progress, decode_result, encode_result
from hydramesh.common.task import CancelRequest, GenerateRequest, ResendRequest, parse_task
from hydramesh.common.wire import HEADER_SIZE
from hydramesh.shim.idmap import INTERNAL_ID_LEN
from hydramesh.shim.ingress import ToClient, ToHead, readdress_result

from ..common.strategies import ids, result_messages
from .helpers import ALICE, BOB, head_says, make_ingress, to_client, to_head


def send(ingress, obj, client=ALICE, now=0.0):
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    ingress.handle_datagram(data, client, now)


def test_generate_goes_to_the_head_under_an_internal_id():
    ingress = make_ingress()
    send(ingress, {"id": "job-1", "prompt": "a red fox", "width": 64, "height": 64, "seed": 7, "progress": True})
    [task] = to_head(ingress)
    assert isinstance(task, GenerateRequest) and task.id != "job-1" and len(task.id) == INTERNAL_ID_LEN
    assert attrs.evolve(task, id="job-1") == GenerateRequest("job-1", "a red fox", width=64, height=64, seed=7, progress=True)
    assert to_client(ingress) == []
    assert ingress.counts["mapped"] == 1 and ingress.counts["forwarded_generate"] == 1


def test_every_result_kind_goes_back_to_its_client_under_its_own_id():
    ingress = make_ingress()
    send(ingress, {"id": "job-1", "prompt": "p", "progress": True})
    [task] = to_head(ingress)
    head_says(ingress, Accepted(task.id))
    head_says(ingress, Progress(task.id, 3, 8))
    image = Image.build(task.id, bytes(range(256)) * 20, mime="image/png", seed=1, worker="w0", width=8, height=8)
    payloads = split(image, max_datagram=600)
    for payload in payloads:
        ingress.handle_result(payload, 1.0)
    got = to_client(ingress, ALICE)
    assert [m.status for m, _ in got] == ["accepted", "progress"] + ["ok"] * len(payloads)
    assert {m.id for m, _ in got} == {"job-1"}
    assert got[1][0] == Progress("job-1", 3, 8)
    collected = Reassembly()
    results = [collected.add(m, d) for m, d in got[2:]]
    assert results[-1].data == image.data and results[-1].info.sha256 == image.info.sha256
    assert not ingress.ids.find(ALICE, "job-1", 1.0).waiting
    assert ingress.relayed == {"accepted": 1, "progress": 1, "ok": len(payloads)}


def test_two_clients_with_the_same_id_are_kept_apart():
    ingress = make_ingress()
    send(ingress, {"id": "same", "prompt": "alice's"}, ALICE)
    send(ingress, {"id": "same", "prompt": "bob's"}, BOB)
    alice_task, bob_task = to_head(ingress)
    assert alice_task.id != bob_task.id
    head_says(ingress, Failure(bob_task.id, ErrorCode.INTERNAL, "out of memory"))
    head_says(ingress, Accepted(alice_task.id))
    assert to_client(ingress, BOB) == [(Failure("same", ErrorCode.INTERNAL, "out of memory"), b"")]
    assert to_client(ingress, ALICE) == [(Accepted("same"), b"")]


def test_retries_are_idempotent_through_the_shim():
    ingress = make_ingress()
    request = {"id": "job-1", "prompt": "p"}
    send(ingress, request, now=0.0)
    send(ingress, request, now=0.5)
    first, second = to_head(ingress)
    assert first == second
    assert ingress.counts["mapped"] == 1 and ingress.counts["repeated"] == 1


def test_cancel_and_resend_use_the_mapping():
    ingress = make_ingress()
    send(ingress, {"id": "job-1", "prompt": "p"})
    [task] = to_head(ingress)
    send(ingress, {"v": 1, "op": "resend", "id": "job-1", "missing": [2, 5]})
    send(ingress, {"op": "cancel", "id": "job-1"})
    assert to_head(ingress) == [ResendRequest(task.id, (2, 5)), CancelRequest(task.id)]
    # Bob cannot cancel or resend Alice's request by naming her id.
    send(ingress, {"op": "cancel", "id": "job-1"}, BOB)
    send(ingress, {"op": "resend", "id": "job-1"}, BOB)
    assert to_head(ingress) == [] and to_client(ingress) == []
    assert ingress.drops["unknown_id"] == 2


def test_mappings_expire_and_late_results_are_dropped():
    ingress = make_ingress(ttl=30.0)
    send(ingress, {"id": "job-1", "prompt": "p"}, now=0.0)
    [task] = to_head(ingress)
    head_says(ingress, Accepted(task.id), now=10.0)  # a result is activity too
    assert ingress.next_deadline() == 40.0
    ingress.tick(39.9)
    assert len(ingress.ids) == 1
    ingress.tick(40.0)
    assert len(ingress.ids) == 0 and ingress.next_deadline() == float("inf")
    to_client(ingress)
    head_says(ingress, Failure(task.id, ErrorCode.TIMEOUT, "late"), now=41.0)
    assert to_client(ingress) == [] and ingress.drops["unmapped_result"] == 1
    # The client coming back later starts a new mapping (a new internal id).
    send(ingress, {"id": "job-1", "prompt": "p"}, now=50.0)
    [again] = to_head(ingress)
    assert again.id != task.id


def test_malformed_datagrams_are_counted_and_answered_where_possible():
    ingress = make_ingress(max_datagram=1000)
    send(ingress, b"")
    send(ingress, b"x" * 1001)
    send(ingress, b"\xff\xfe not utf-8")
    send(ingress, b"{not json")
    send(ingress, b"[1, 2, 3]")
    send(ingress, {"id": "job-9", "prompt": "p", "width": 65})
    send(ingress, {"id": "job-9", "prompt": "p", "stpes": 4})
    send(ingress, {"id": "bad id!", "prompt": "p"})
    send(ingress, {"id": "job-9", "op": "explode"})
    assert to_head(ingress) == []
    answers = [m for m, _ in to_client(ingress, ALICE)]
    assert all(isinstance(m, Failure) and m.code is ErrorCode.INVALID for m in answers)
    assert [(m.id, m.field) for m in answers] == [
        ("", None),  # oversize
        ("", None),  # not UTF-8
        ("", None),  # not JSON
        ("", None),  # not an object
        ("job-9", "width"),
        ("job-9", "stpes"),
        ("", "id"),
        ("job-9", "op"),
    ]
    assert "1001 bytes" in answers[0].message
    assert dict(ingress.drops) == {"empty": 1, "oversize": 1, "bad_payload": 3, "invalid": 4}
    assert len(ingress.ids) == 0


def test_rate_limit_answers_busy_once_per_second_then_stays_silent():
    ingress = make_ingress(rate=2.0, burst=2)
    for i in range(2):
        send(ingress, {"id": f"r{i}", "prompt": "p"}, now=0.0)
    assert len(to_head(ingress)) == 2
    send(ingress, {"id": "r2", "prompt": "p"}, now=0.0)
    send(ingress, {"id": "r3", "prompt": "p"}, now=0.2)
    send(ingress, b"garbage", now=0.3)
    assert to_head(ingress) == []
    [(busy, _)] = to_client(ingress, ALICE)
    assert busy.code is ErrorCode.BUSY and busy.id == "r2" and busy.retry_after == 0.5
    assert "2 datagrams/s" in busy.message
    assert ingress.drops["rate_limited"] == 3
    # Refused datagrams took no token: by t=1 the bucket is full again.
    send(ingress, {"id": "r4", "prompt": "p"}, now=1.0)
    send(ingress, {"id": "r5", "prompt": "p"}, now=1.0)
    assert [t.prompt for t in to_head(ingress)] == ["p", "p"]
    send(ingress, {"id": "r6", "prompt": "p"}, now=1.0)
    [(busy, _)] = to_client(ingress, ALICE)  # a second since the last notice: told again
    assert busy.id == "r6" and busy.retry_after == 0.5
    send(ingress, {"id": "x", "prompt": "p"}, BOB, now=1.0)  # Bob has his own bucket
    assert len(to_head(ingress)) == 1


def test_sources_outside_the_allow_list_are_ignored():
    ingress = make_ingress(allow=["10.0.0.0/31"])
    send(ingress, {"id": "a", "prompt": "p"}, ALICE)
    send(ingress, {"id": "b", "prompt": "p"}, BOB)
    send(ingress, b"garbage", BOB)
    assert len(to_head(ingress)) == 1 and to_client(ingress) == []
    assert ingress.drops["not_allowed"] == 2


def test_draining_refuses_new_requests_but_serves_known_ones():
    ingress = make_ingress()
    send(ingress, {"id": "old", "prompt": "p"})
    [old] = to_head(ingress)
    ingress.draining = True
    send(ingress, {"id": "old", "prompt": "p"})
    send(ingress, {"id": "new", "prompt": "p"})
    assert to_head(ingress) == [old]
    [(busy, _)] = to_client(ingress, ALICE)
    assert busy.id == "new" and busy.code is ErrorCode.BUSY and busy.retry_after == 5.0


def test_the_head_holds_work_from_generate_to_its_final_answer():
    ingress = make_ingress()
    send(ingress, {"id": "job", "prompt": "p"})
    [task] = to_head(ingress)
    assert ingress.ids.waiting() == 1
    head_says(ingress, Accepted(task.id))
    assert ingress.ids.waiting() == 1
    # busy is relayed as it is; the head holds nothing for it until the retry.
    head_says(ingress, Failure(task.id, ErrorCode.BUSY, "full", retry_after=2.5))
    assert to_client(ingress, ALICE)[-1] == (Failure("job", ErrorCode.BUSY, "full", retry_after=2.5), b"")
    assert ingress.ids.waiting() == 0
    send(ingress, {"id": "job", "prompt": "p"})
    assert ingress.ids.waiting() == 1
    head_says(ingress, Failure(task.id, ErrorCode.CANCELLED, "cancelled"))
    assert ingress.ids.waiting() == 0 and len(ingress.ids) == 1  # still mapped, for repeats


def test_garbage_and_strangers_from_the_head_side_are_dropped():
    ingress = make_ingress()
    ingress.handle_result(b"\x00", 0.0)
    ingress.handle_result(encode_result(Accepted("somebody-else")), 0.0)
    assert ingress.outbox == []
    assert ingress.drops == {"bad_result": 1, "unmapped_result": 1}


def test_readdress_keeps_every_other_meta_field_and_the_data():
    payload = encode_result(Accepted("a" * 48))
    meta = json.loads(payload[2:])
    meta["future_field"] = [1, {"x": 2}]
    raw = json.dumps(meta, separators=(",", ":")).encode()
    payload = len(raw).to_bytes(2, "big") + raw + b"DATA"
    out = readdress_result(payload, "mine")
    out_meta = json.loads(out[2 : 2 + int.from_bytes(out[:2], "big")])
    assert out_meta == {**meta, "id": "mine"} and out.endswith(b"DATA")


@given(result_messages, ids)
def test_readdressed_results_decode_and_never_outgrow_the_dcf_datagram(message_data, client_id):
    message, data = message_data
    internal = "shim.0123456789abcdef0123456789.0000000000000001"
    if isinstance(message, Chunk):
        message = attrs.evolve(message, info=attrs.evolve(message.info, id=internal))
    else:
        message = attrs.evolve(message, id=internal)
    payload = encode_result(message, data)
    out = readdress_result(payload, client_id)
    # The bare payload to the client fits where the DCF datagram (header + payload) did.
    assert len(out) <= len(payload) + HEADER_SIZE
    got, got_data = decode_result(out)
    assert got.id == client_id and got_data == data
    assert got.status == message.status


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([b"{}", b'{"id":"x","prompt":"p"}', b'{"op":"cancel","id":"x"}']), max_size=8))
def test_any_datagrams_give_only_valid_output(datagrams):
    ingress = make_ingress(rate=5.0, burst=3, max_datagram=150)
    for i, data in enumerate(datagrams):
        ingress.handle_datagram(data, ALICE, i * 0.1)
    for out in ingress.outbox:
        if isinstance(out, ToHead):
            assert parse_task(out.payload).id.startswith("shim.")
        else:
            assert isinstance(out, ToClient) and out.address == ALICE
            assert isinstance(decode_result(out.payload)[0], Failure)


@given(st.binary(max_size=300))
def test_any_head_payload_is_handled_without_raising(payload):
    ingress = make_ingress()
    send(ingress, {"id": "x", "prompt": "p"})
    ingress.handle_result(payload, 0.0)
