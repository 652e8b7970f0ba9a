"""Decoders of the HTTP side: the images request body, API key files, the head's status."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hydramesh.common.errors import ErrorCode
from hydramesh.common.task import GenerateRequest
from hydramesh.shim.api_errors import ApiError, from_cluster
from hydramesh.shim.auth import ApiKeys, parse_api_keys
from hydramesh.shim.head_status import models_from_status
from hydramesh.shim.images import parse_images_request


def parse(body, max_images=4):
    return parse_images_request(json.dumps(body).encode(), max_images=max_images)


def test_a_full_request():
    spec = parse(
        {
            "prompt": "a red fox",
            "n": 3,
            "size": "64x32",
            "response_format": "url",
            "model": "tiny",
            "user": "u-1",
            "output_format": "webp",
            "quality": "hd",
            "style": "vivid",
            "negative_prompt": "blur",
            "steps": 4,
            "guidance": 7.5,
            "seed": 4294967295,
        }
    )
    assert spec.n == 3 and spec.response_format == "url" and spec.user == "u-1" and spec.model == "tiny"
    tasks = spec.tasks(["a", "b", "c"], random.Random(0))
    assert [t.seed for t in tasks] == [4294967295, 0, 1]  # distinct, wrapping
    assert tasks[1] == GenerateRequest(
        "b", "a red fox", negative_prompt="blur", model="tiny", width=64, height=32, steps=4, guidance=7.5, seed=0, format="webp"
    )


def test_defaults_and_random_distinct_seeds():
    spec = parse({"prompt": "p", "n": 2, "size": "auto"})
    assert spec.n == 2 and spec.response_format == "b64_json" and spec.template.width is None
    first, second = spec.tasks(["a", "b"], random.Random(1))
    assert first.seed is not None and second.seed == (first.seed + 1) % (1 << 32)
    assert first.format == "png" and not first.progress


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"n": 1}, "prompt", "required"),
        ({"prompt": ""}, "prompt", "empty"),
        ({"prompt": "p", "n": 5}, "n", "between 1 and 4"),
        ({"prompt": "p", "n": 0}, "n", "between"),
        ({"prompt": "p", "n": True}, "n", "integer"),
        ({"prompt": "p", "size": "big"}, "size", "512x512"),
        ({"prompt": "p", "size": "65x64"}, "size", "width must be a multiple of 8"),
        ({"prompt": "p", "size": "64x4096"}, "size", "height must be between"),
        ({"prompt": "p", "response_format": "jpeg"}, "response_format", "b64_json"),
        ({"prompt": "p", "output_format": "gif"}, "output_format", "png"),
        ({"prompt": "p", "steps": 1000}, "steps", "between"),
        ({"prompt": "p", "guidance": "high"}, "guidance", "number"),
        ({"prompt": "p", "seed": -1}, "seed", "between"),
        ({"prompt": "p", "stream": True}, "stream", "not supported"),
        ({"prompt": "p", "partial_images": 2}, "partial_images", "not supported"),
        ({"prompt": "p", "sizee": "64x64"}, "sizee", "not a known field"),
        ({"prompt": "p", "id": "mine"}, "id", "not a known field"),
    ],
)
def test_bad_requests_name_the_openai_field(body, param, fragment):
    with pytest.raises(ApiError) as info:
        parse(body)
    assert info.value.status == 400 and info.value.param == param and info.value.code == "invalid"
    assert fragment in info.value.message
    assert info.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [b"", b"null", b"[1]", b"{", b"\"x\"", b"\xff"])
def test_bodies_that_are_not_objects(body):
    with pytest.raises(ApiError) as info:
        parse_images_request(body, max_images=4)
    assert info.value.status == 400 and info.value.param is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["prompt", "n", "size", "response_format", "model", "user", "output_format", "quality", "stream",
     "partial_images", "negative_prompt", "steps", "guidance", "seed", "other"]
)


@given(st.dictionaries(field_names, json_values, max_size=8) | st.binary(max_size=80).map(lambda b: b))
def test_any_body_parses_or_is_a_400(body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        spec = parse_images_request(raw, max_images=4)
    except ApiError as exc:
        assert exc.status == 400
        return
    assert 1 <= spec.n <= 4
    assert len(spec.tasks([f"i{k}" for k in range(spec.n)], random.Random(0))) == spec.n


def test_cluster_errors_map_to_http_statuses():
    def status(code, model=None, **kw):
        exc = from_cluster(code, "m", field=kw.get("field"), retry_after=kw.get("retry_after"), model=model)
        return exc.status, exc.code, exc.param, exc.retry_after

    assert status(ErrorCode.INVALID, field="width") == (400, "invalid", "size", None)
    assert status(ErrorCode.BUSY, retry_after=2.5) == (429, "busy", None, 2.5)
    assert status(ErrorCode.UNKNOWN_MODEL, model="sdxl") == (404, "unknown_model", "model", None)
    assert status(ErrorCode.UNKNOWN_MODEL) == (503, "no_workers", None, 5.0)
    assert status(ErrorCode.WORKER_FAILED)[0] == 502 and status(ErrorCode.INTERNAL)[0] == 502
    assert status(ErrorCode.TIMEOUT)[0] == 504
    busy = from_cluster(ErrorCode.BUSY, "full", field=None, retry_after=2.1, model=None).response()
    assert busy.headers["retry-after"] == "3" and busy.status_code == 429
    assert json.loads(busy.body) == {"error": {"message": "full", "type": "rate_limit_error", "param": None, "code": "busy"}}


def test_api_keys():
    keys = ApiKeys(parse_api_keys("# ops\nsk-one\n\n  sk-two  \n"))
    assert keys.keys == (b"sk-one", b"sk-two")
    assert keys.authorizes("Bearer sk-two") and keys.authorizes("bearer  sk-one")
    assert not keys.authorizes(None) and not keys.authorizes("Bearer sk-three") and not keys.authorizes("sk-one")
    assert not keys.authorizes("Basic sk-one") and not keys.authorizes("Bearer")
    assert ApiKeys().authorizes(None)
    with pytest.raises(ValueError):
        parse_api_keys("two words\n")


@given(st.text(max_size=200))
def test_any_key_file_parses_or_raises_value_error(text):
    try:
        keys = parse_api_keys(text)
    except ValueError:
        return
    assert all(key and not key.startswith(b"#") for key in keys)


@given(st.text(max_size=80) | st.none())
def test_any_authorization_header_is_a_yes_or_no(header):
    assert ApiKeys((b"k",)).authorizes(header) is (header is not None and header.strip().lower().startswith("bearer ") and header.strip()[7:].strip() == "k")


def test_models_from_the_heads_status():
    assert models_from_status({"models": ["a", "b"], "workers": []}) == ["a", "b"]
    for bad in (None, [], {"models": "a"}, {"models": [1]}, {}):
        with pytest.raises(ValueError):
            models_from_status(bad)


@given(json_values)
def test_any_status_body_gives_names_or_value_error(body):
    try:
        names = models_from_status(body)
    except ValueError:
        return
    assert all(isinstance(n, str) for n in names)
