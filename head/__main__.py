"""``hydramesh-head``: the router of a HydraMesh cluster."""

from __future__ import annotations

from hydramesh.runtime.lifecycle import service_main

from .config import HeadConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    service_main(
        "head",
        HeadConfig,
        serve,
        description="Route text-to-image tasks from clients to HydraMesh workers over DCF/UDP.",
        node=lambda config: config.node,
        argv=argv,
    )


if __name__ == "__main__":
    main()
