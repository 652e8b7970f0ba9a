"""``hydramesh-shim``: the public edge of a HydraMesh cluster (UDP ingress and OpenAI-compatible HTTP)."""

from __future__ import annotations

import os
import sys

from hydramesh.common.config import parse_config
from hydramesh.runtime.lifecycle import main_for, node_name

from .config import ShimConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        ShimConfig,
        sys.argv[1:] if argv is None else argv,
        os.environ,
        prog="hydramesh-shim",
        description="Bridge bare-JSON UDP clients and an OpenAI-compatible HTTP API onto a HydraMesh head.",
    )
    main_for("shim", serve, config, node=node_name(config.node), drain_timeout=30.0)


if __name__ == "__main__":
    main()
