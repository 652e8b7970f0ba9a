"""In-process clusters with a shim in front, on port 0."""

from __future__ import annotations

from hydramesh.head.config import HeadConfig
from hydramesh.shim.config import ShimConfig
from hydramesh.shim.service import serve as serve_shim

from ..integration.test_cluster_null import start_cluster


async def start_shim_cluster(nursery, *, workers=2, head_config=None, shim_kwargs=None, head_http=False, **worker_kwargs):
    """A head, ``workers`` null workers and a shim in front; returns ``(head, workers, shim)``."""
    head_config = head_config or HeadConfig(
        host="127.0.0.1", port=0, http_host="127.0.0.1", http_port=0 if head_http else -1, seed=1
    )
    head, started = await start_cluster(nursery, workers=workers, head_config=head_config, **worker_kwargs)
    values = dict(host="127.0.0.1", ingress_port=0, http_port=-1, node_target=f"127.0.0.1:{head.address[1]}")
    if head.http_address is not None:
        values["head_status_url"] = f"http://127.0.0.1:{head.http_address[1]}/status"
    values.update(shim_kwargs or {})
    shim = await nursery.start(serve_shim, ShimConfig(**values))
    return head, started, shim
