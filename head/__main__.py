"""``hydramesh-head``: the router of a HydraMesh cluster."""

from __future__ import annotations

import os
import sys

from hydramesh.common.config import parse_config
from hydramesh.runtime.lifecycle import main_for, node_name

from .config import HeadConfig
from .service import serve


def main(argv: list[str] | None = None) -> None:
    config = parse_config(
        HeadConfig,
        sys.argv[1:] if argv is None else argv,
        os.environ,
        prog="hydramesh-head",
        description="Route text-to-image tasks from clients to HydraMesh workers over DCF/UDP.",
    )
    main_for("head", serve, config, node=node_name(config.node), drain_timeout=30.0)


if __name__ == "__main__":
    main()
