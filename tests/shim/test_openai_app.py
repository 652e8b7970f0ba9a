"""The HTTP API with a scripted cluster behind it, served by hypercorn on port 0.

Everything but the cluster is real: routing, the OpenAI error shape, status
codes and headers, API keys, the allow-list, body limits, drain, and the
cancellation of tasks when an HTTP client hangs up.
"""

from __future__ import annotations

import base64
import json
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from hydramesh.client.cluster import ClusterError
from hydramesh.common.chunking import Image
from hydramesh.common.errors import ErrorCode
from hydramesh.runtime.http import serve_http
from hydramesh.shim.auth import ApiKeys
from hydramesh.shim.limits import AllowList, RateLimiter
from hydramesh.shim.openai_api import HttpFront, make_app


class ScriptedCluster:
    """Answers each request with ``behaviour(request)``; records everything."""

    def __init__(self, behaviour=None):
        self.behaviour = behaviour or self.image
        self.requests = []
        self.cancelled = []

    @staticmethod
    async def image(request):
        data = f"image of {request.prompt!r} seed {request.seed}".encode()
        return Image.build(request.id, data, mime="image/png", seed=request.seed, width=request.width or 64, height=request.height or 64)

    async def generate(self, request, *, timeout, retry_busy):
        assert retry_busy is False  # busy must reach the HTTP client as a 429
        self.requests.append(request)
        return await self.behaviour(request)

    async def cancel(self, request_id):
        self.cancelled.append(request_id)


@asynccontextmanager
async def serving(cluster, *, models=("null", "tiny"), **front_kwargs):
    counter = iter(range(1, 1 << 30))

    async def list_models():
        if isinstance(models, Exception):
            raise models
        return list(models)

    front = HttpFront(cluster, lambda: f"http-{next(counter)}", list_models, **front_kwargs)
    app = make_app(front, health=lambda: {"status": "draining" if front.draining else "ok"}, metrics=lambda: "m 1\n")
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_http, app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{address[1]}", timeout=10) as http:
            yield http, front, address
        nursery.cancel_scope.cancel()


def assert_openai_error(response, status, code, param=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code and body["error"]["param"] == param
    assert body["error"]["message"]
    return body["error"]


async def test_n_images_fan_out_with_distinct_ids_and_seeds():
    cluster = ScriptedCluster()
    async with serving(cluster) as (http, front, _):
        response = await http.post("/v1/images/generations", json={"prompt": "fox", "n": 3, "size": "64x32", "seed": 10})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"created", "data"} and isinstance(body["created"], int)
        assert [base64.b64decode(d["b64_json"]) for d in body["data"]] == [
            f"image of 'fox' seed {s}".encode() for s in (10, 11, 12)
        ]
        assert all(d["revised_prompt"] is None and set(d) == {"b64_json", "revised_prompt"} for d in body["data"])
        assert len({r.id for r in cluster.requests}) == 3
        assert {(r.width, r.height) for r in cluster.requests} == {(64, 32)}
        assert cluster.cancelled == [] and front.images == 3 and front.in_flight == 0


async def test_url_response_format_is_a_data_url():
    async with serving(ScriptedCluster()) as (http, _, _):
        response = await http.post("/v1/images/generations", json={"prompt": "fox", "response_format": "url", "output_format": "webp"})
        [entry] = response.json()["data"]
        assert entry["url"].startswith("data:image/png;base64,")  # the scripted cluster always says png
        assert base64.b64decode(entry["url"].split(",", 1)[1]).startswith(b"image of")


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (ClusterError(ErrorCode.BUSY, "the head's queue is full", retry_after=2.2), 429, "busy", "3"),
        (ClusterError(ErrorCode.WORKER_FAILED, "failed on 3 dispatches"), 502, "worker_failed", None),
        (ClusterError(ErrorCode.INTERNAL, "CUDA out of memory"), 502, "internal", None),
        (ClusterError(ErrorCode.TIMEOUT, "no result within 300 s"), 504, "timeout", None),
        (ClusterError(ErrorCode.UNKNOWN_MODEL, "no worker is registered with the head"), 503, "no_workers", "5"),
    ],
)
async def test_cluster_errors_become_openai_errors(error, status, code, retry_after):
    async def fail(request):
        raise error

    async with serving(ScriptedCluster(fail)) as (http, front, _):
        response = await http.post("/v1/images/generations", json={"prompt": "fox"})
        details = assert_openai_error(response, status, code)
        assert details["message"] == error.message
        assert response.headers.get("retry-after") == retry_after
        assert front.responses[str(status)] == 1


async def test_unknown_model_is_a_404_naming_the_model():
    async def fail(request):
        raise ClusterError(ErrorCode.UNKNOWN_MODEL, f"no live worker serves model {request.model!r}")

    async with serving(ScriptedCluster(fail)) as (http, _, _):
        response = await http.post("/v1/images/generations", json={"prompt": "fox", "model": "dall-e-3"})
        assert "dall-e-3" in assert_openai_error(response, 404, "unknown_model", "model")["message"]


async def test_one_failure_ends_the_request_and_cancels_the_rest():
    async def behaviour(request):
        if request.seed == 1:
            raise ClusterError(ErrorCode.BUSY, "full", retry_after=1.0)
        await trio.sleep_forever()

    cluster = ScriptedCluster(behaviour)
    async with serving(cluster) as (http, _, _):
        response = await http.post("/v1/images/generations", json={"prompt": "fox", "n": 3, "seed": 0})
        assert_openai_error(response, 429, "busy")
        assert sorted(cluster.cancelled) == sorted(r.id for r in cluster.requests)


async def test_a_client_that_hangs_up_cancels_its_tasks():
    started = trio.Event()

    async def behaviour(request):
        started.set()
        await trio.sleep_forever()

    cluster = ScriptedCluster(behaviour)
    async with serving(cluster) as (_, front, address):
        stream = await trio.open_tcp_stream(*address)
        body = json.dumps({"prompt": "fox", "n": 2}).encode()
        await stream.send_all(
            b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        await started.wait()
        assert front.in_flight == 1
        await stream.aclose()
        with trio.fail_after(5):
            while len(cluster.cancelled) < 2:
                await trio.sleep(0.01)
        assert sorted(cluster.cancelled) == sorted(r.id for r in cluster.requests)
        assert front.in_flight == 0 and front.responses["client_closed"] == 1


async def test_api_keys_allow_list_and_rate_limit():
    keys = ApiKeys((b"sk-good",))
    async with serving(ScriptedCluster(), api_keys=keys, limiter=RateLimiter(rate=0.001, burst=2)) as (http, _, _):
        missing = await http.post("/v1/images/generations", json={"prompt": "fox"})
        assert_openai_error(missing, 401, "invalid_api_key")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/v1/models", headers={"Authorization": "Bearer sk-bad"})
        assert_openai_error(wrong, 401, "invalid_api_key")
        good = {"Authorization": "Bearer sk-good"}
        assert (await http.get("/v1/models", headers=good)).status_code == 200
        assert (await http.post("/v1/images/generations", json={"prompt": "fox"}, headers=good)).status_code == 200
        limited = await http.get("/v1/models", headers=good)
        assert_openai_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) > 0
        # Operations endpoints need no key.
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).text == "m 1\n"
    async with serving(ScriptedCluster(), allow=AllowList.parse(["10.0.0.0/8"])) as (http, _, _):
        assert_openai_error(await http.get("/healthz"), 403, "forbidden")
        assert_openai_error(await http.post("/v1/images/generations", json={"prompt": "fox"}), 403, "forbidden")


async def test_models():
    async with serving(ScriptedCluster()) as (http, _, _):
        body = (await http.get("/v1/models")).json()
        assert body == {
            "object": "list",
            "data": [
                {"id": "null", "object": "model", "created": 0, "owned_by": "hydramesh"},
                {"id": "tiny", "object": "model", "created": 0, "owned_by": "hydramesh"},
            ],
        }
        assert (await http.get("/v1/models/tiny")).json()["id"] == "tiny"
        assert_openai_error(await http.get("/v1/models/sdxl"), 404, "unknown_model", "model")
    async with serving(ScriptedCluster(), models=OSError("connection refused")) as (http, _, _):
        response = await http.get("/v1/models")
        assert "connection refused" in assert_openai_error(response, 503, "head_unreachable")["message"]


async def test_bad_requests_routes_and_bodies():
    async with serving(ScriptedCluster()) as (http, _, _):
        details = assert_openai_error(await http.post("/v1/images/generations", json={"prompt": "fox", "size": "65x64"}), 400, "invalid", "size")
        assert details["type"] == "invalid_request_error"
        assert_openai_error(await http.post("/v1/images/generations", content=b"{nope"), 400, "invalid")
        assert_openai_error(await http.get("/v1/images/generations"), 405, "method_not_allowed")
        assert_openai_error(await http.get("/v1/chat/completions"), 404, "not_found")
        # The server closes a connection whose body it did not read: use a fresh one.
        async with httpx.AsyncClient(base_url=http.base_url) as once:
            response = await once.post("/v1/images/generations", content=b"x" * (300 << 10))
        assert_openai_error(response, 413, "invalid")


async def test_draining_answers_503_with_retry_after():
    async with serving(ScriptedCluster()) as (http, front, _):
        front.draining = True
        response = await http.post("/v1/images/generations", json={"prompt": "fox"})
        assert_openai_error(response, 503, "draining")
        assert response.headers["retry-after"] == "5"
        assert (await http.get("/healthz")).status_code == 503


async def test_requests_wait_on_the_cluster_without_blocking_each_other():
    everyone_waiting = trio.Event()

    async def behaviour(request):
        await everyone_waiting.wait()  # released only once all ten are in flight at once
        return await ScriptedCluster.image(request)

    cluster = ScriptedCluster(behaviour)
    async with serving(cluster) as (http, front, _):
        statuses = []

        async def one(i):
            statuses.append((await http.post("/v1/images/generations", json={"prompt": f"p{i}"})).status_code)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(one, i)
            with trio.fail_after(10):
                while front.in_flight < 10:
                    await trio.sleep(0.01)
            everyone_waiting.set()
        assert statuses == [200] * 10 and front.images == 10
