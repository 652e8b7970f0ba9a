"""The head's HTTP side: health, Prometheus metrics, status JSON and page."""

import httpx
import trio

from hydramesh.client.cluster import ClusterClient
from hydramesh.common.task import GenerateRequest
from hydramesh.head.config import HeadConfig
from hydramesh.head.service import serve as serve_head
from hydramesh.worker.config import WorkerConfig
from hydramesh.worker.service import serve as serve_worker


async def get(address, path):
    url = f"http://{address[0]}:{address[1]}{path}"
    return await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=10))


async def test_status_metrics_and_health(nursery):
    head = await nursery.start(serve_head, HeadConfig(host="127.0.0.1", port=0, http_host="127.0.0.1", http_port=0))
    worker_config = WorkerConfig(
        head_ip="127.0.0.1", head_port=head.address[1], host="127.0.0.1", http_host="127.0.0.1", http_port=0,
        backend="null", worker_id="w<1>", heartbeat_interval=0.05,
    )
    worker = await nursery.start(serve_worker, worker_config)
    with trio.fail_after(10):
        while not head.router.registry.workers:
            await trio.sleep(0.02)
        async with ClusterClient.connect(head.address) as client:
            await client.generate(GenerateRequest("h1", "hello", width=16, height=16))

    health = await get(head.http_address, "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "workers": 1}
    status = (await get(head.http_address, "/status")).json()
    assert status["workers"][0]["id"] == "w<1>" and status["counts"]["completed"] == 1
    assert status["recent"][0]["id"] == "h1" and status["models"] == ["null"]
    metrics = (await get(head.http_address, "/metrics")).text
    assert "hydramesh_head_completed_total 1" in metrics
    assert 'hydramesh_head_worker_dispatched_total{worker="w<1>"} 1' in metrics
    assert 'hydramesh_head_task_seconds_bucket{le="+Inf"} 1' in metrics
    page = (await get(head.http_address, "/")).text
    assert "w&lt;1&gt;" in page and "<script" not in page
    worker_metrics = (await get(worker.http_address, "/metrics")).text
    assert 'hydramesh_worker_completed_total{worker="w<1>"} 1' in worker_metrics
    assert (await get(worker.http_address, "/healthz")).json()["status"] == "ready"
