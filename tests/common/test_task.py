import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common.errors import BadPayload, DecodeError, InvalidRequest
from hydramesh.common.task import CancelRequest, GenerateRequest, Limits, ResendRequest, parse_task

from .strategies import task_messages


@given(task_messages)
def test_round_trip(message):
    assert parse_task(message.encode()) == message


def test_bare_prompt_gets_defaults():
    request = parse_task(b'{"id": "a1", "prompt": "a red fox"}')
    assert request == GenerateRequest("a1", "a red fox")
    assert request.format == "png" and request.progress is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "id"),
        ({"id": "", "prompt": "x"}, "id"),
        ({"id": "a" * 65, "prompt": "x"}, "id"),
        ({"id": "has space", "prompt": "x"}, "id"),
        ({"id": "a"}, "prompt"),
        ({"id": "a", "prompt": ""}, "prompt"),
        ({"id": "a", "prompt": "x" * 2001}, "prompt"),
        ({"id": "a", "prompt": 5}, "prompt"),
        ({"id": "a", "prompt": "x", "width": 100}, "width"),
        ({"id": "a", "prompt": "x", "height": 4096}, "height"),
        ({"id": "a", "prompt": "x", "width": 2048, "height": 2048, "steps": 0}, "steps"),
        ({"id": "a", "prompt": "x", "steps": 151}, "steps"),
        ({"id": "a", "prompt": "x", "steps": True}, "steps"),
        ({"id": "a", "prompt": "x", "steps": 2.5}, "steps"),
        ({"id": "a", "prompt": "x", "guidance": -1}, "guidance"),
        ({"id": "a", "prompt": "x", "guidance": "high"}, "guidance"),
        ({"id": "a", "prompt": "x", "seed": -1}, "seed"),
        ({"id": "a", "prompt": "x", "seed": 1 << 32}, "seed"),
        ({"id": "a", "prompt": "x", "format": "gif"}, "format"),
        ({"id": "a", "prompt": "x", "scheduler": "k_lms"}, "scheduler"),
        ({"id": "a", "prompt": "x", "progress": 1}, "progress"),
        ({"id": "a", "prompt": "x", "stpes": 3}, "stpes"),
        ({"id": "a", "prompt": "x", "v": 2}, "v"),
        ({"id": "a", "op": "explode"}, "op"),
        ({"id": "a", "op": "resend", "missing": [-1]}, "missing"),
        ({"id": "a", "op": "resend", "missing": "1,2"}, "missing"),
    ],
)
def test_invalid_fields_are_named(body, field):
    with pytest.raises(InvalidRequest) as info:
        parse_task(json.dumps(body).encode())
    assert info.value.field == field
    assert field in str(info.value)


def test_pixel_limit():
    limits = Limits(max_pixels=64 * 64)
    with pytest.raises(InvalidRequest, match="pixel limit"):
        parse_task(b'{"id":"a","prompt":"x","width":128,"height":64}', limits)


def test_error_keeps_the_request_id_when_readable():
    with pytest.raises(InvalidRequest) as info:
        parse_task(b'{"id":"job-7","prompt":"x","steps":0}')
    assert info.value.request_id == "job-7"


@pytest.mark.parametrize("raw", [b"", b"[]", b"nul", b"\xff\xfe", b'"text"', b"{" * 100000])
def test_not_an_object_is_bad_payload(raw):
    with pytest.raises(BadPayload):
        parse_task(raw)


def test_cancel_and_resend():
    assert parse_task(b'{"op":"cancel","id":"x"}') == CancelRequest("x")
    assert parse_task(b'{"op":"resend","id":"x","missing":[3,4]}') == ResendRequest("x", (3, 4))
    assert parse_task(b'{"op":"resend","id":"x"}') == ResendRequest("x", ())


@given(st.binary(max_size=500))
def test_arbitrary_bytes_only_raise_decode_errors(raw):
    try:
        parse_task(raw)
    except DecodeError:
        pass


@given(task_messages, st.data())
def test_mutated_json_only_raises_decode_errors(message, data):
    raw = bytearray(message.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        parse_task(bytes(raw))
    except DecodeError:
        pass


@given(st.dictionaries(st.sampled_from(["v", "op", "id", "prompt", "width", "height", "steps", "guidance", "seed", "format", "progress", "missing", "model", "negative_prompt"]), st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=3)))
def test_fields_of_any_json_type_only_raise_decode_errors(obj):
    try:
        parse_task(json.dumps(obj).encode())
    except DecodeError:
        pass
