"""``hydramesh-worker``: an inference node of a HydraMesh cluster."""

from __future__ import annotations

from hydramesh.runtime.lifecycle import service_main

from .config import WorkerConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    service_main(
        "worker",
        WorkerConfig,
        serve,
        description="Run diffusers text-to-image pipelines for a HydraMesh head.",
        node=lambda config: config.worker_id,
        argv=argv,
    )


if __name__ == "__main__":
    main()
