"""Learning the cluster's models for ``GET /v1/models`` from the head's
``/status`` (``--head-status-url``; by default the node target's host on the
head's default HTTP port 7780).

The head already publishes its live workers' models there for operators.
Asking it over DCF instead would need a new TASK operation in the protocol,
the head's router and every other implementation, for one listing call; the
status page costs nothing new. The fetch is a blocking ``urllib`` call in a
worker thread, bounded by a short timeout.
"""

from __future__ import annotations

import json
import urllib.request

import trio


def models_from_status(body: object) -> list[str]:
    """The ``models`` list of a head's status JSON; ``ValueError`` if absent."""
    if not isinstance(body, dict):
        raise ValueError("the head's status is not a JSON object")
    models = body.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ValueError("the head's status has no list of model names")
    return list(models)


def fetch_models(url: str, timeout: float = 2.0) -> list[str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return models_from_status(json.load(response))


async def list_models(url: str, timeout: float = 2.0) -> list[str]:
    return await trio.to_thread.run_sync(fetch_models, url, timeout, abandon_on_cancel=True)
