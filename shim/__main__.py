"""``hydramesh-shim``: the public edge of a HydraMesh cluster (UDP ingress and OpenAI-compatible HTTP)."""

from __future__ import annotations

from hydramesh.runtime.lifecycle import service_main

from .config import ShimConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    service_main(
        "shim",
        ShimConfig,
        serve,
        description="Bridge bare-JSON UDP clients and an OpenAI-compatible HTTP API onto a HydraMesh head.",
        node=lambda config: config.node,
        argv=argv,
    )


if __name__ == "__main__":
    main()
