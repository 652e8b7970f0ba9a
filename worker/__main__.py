"""``hydramesh-worker``: an inference node of a HydraMesh cluster."""

from __future__ import annotations

import os
import sys

from hydramesh.common.config import parse_config
from hydramesh.runtime.lifecycle import main_for, node_name

from .config import WorkerConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        WorkerConfig,
        sys.argv[1:] if argv is None else argv,
        os.environ,
        prog="hydramesh-worker",
        description="Run diffusers text-to-image pipelines for a HydraMesh head.",
    )
    main_for("worker", serve, config, node=node_name(config.worker_id), drain_timeout=30.0)


if __name__ == "__main__":
    main()
