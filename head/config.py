"""The head's configuration: flags with environment twins (DESIGN §6)."""

from __future__ import annotations

from pathlib import Path

import attrs

from hydramesh.common.chunking import DEFAULT_MAX_DATAGRAM
from hydramesh.common.config import cluster_key_file_option, log_format_option, log_level_option, option


@attrs.frozen
class HeadConfig:
    host: str = option("0.0.0.0", "--host", env="HEAD_HOST", help="address to bind the UDP cluster port on")
    port: int = option(7777, "--port", env="HEAD_PORT", help="UDP cluster port (0 picks a free one)")
    http_host: str = option("0.0.0.0", "--http-host", env="HEAD_HTTP_HOST", help="address of the status/metrics HTTP server")
    http_port: int = option(7780, "--http-port", env="HEAD_HTTP_PORT", help="HTTP port for /status, /metrics, /healthz; -1 disables")
    heartbeat_timeout: float = option(
        3.0, "--heartbeat-timeout", env="HEAD_HEARTBEAT_TIMEOUT", help="seconds of silence after which a worker is dropped"
    )
    queue_max: int = option(256, "--queue-max", env="HEAD_QUEUE_MAX", help="queued tasks beyond which new ones get 'busy'")
    max_attempts: int = option(
        3, "--max-attempts", env="HEAD_MAX_ATTEMPTS", help="workers that may lose one task (after acknowledging it) before 'worker_failed'"
    )
    max_dispatches: int = option(
        10, "--max-dispatches", env="HEAD_MAX_DISPATCHES", help="dispatches of one task in all, lost datagrams included"
    )
    queue_timeout: float = option(
        600.0, "--queue-timeout", env="HEAD_QUEUE_TIMEOUT", help="seconds a task may wait for a worker before 'timeout'"
    )
    lease_base: float = option(30.0, "--lease-base", env="HEAD_LEASE_BASE", help="lease TTL floor in seconds")
    lease_per_step_mp: float = option(
        1.0, "--lease-per-step-mp", env="HEAD_LEASE_PER_STEP_MP", help="extra lease seconds per denoising step per megapixel"
    )
    ack_grace: float = option(
        0.25, "--ack-grace", env="HEAD_ACK_GRACE", help="seconds after dispatch before a heartbeat that omits a task means it was lost"
    )
    resend_quiet: float = option(
        0.25, "--resend-quiet", env="HEAD_RESEND_QUIET", help="quiet seconds before missing result chunks are re-requested"
    )
    resend_rounds: int = option(4, "--resend-rounds", env="HEAD_RESEND_ROUNDS", help="re-requests before a result is recomputed elsewhere")
    result_cache_entries: int = option(1024, "--result-cache-entries", env="HEAD_RESULT_CACHE_ENTRIES", help="finished results kept for repeats")
    result_cache_mb: int = option(512, "--result-cache-mb", env="HEAD_RESULT_CACHE_MB", help="memory bound of the result cache")
    result_ttl: float = option(600.0, "--result-ttl", env="HEAD_RESULT_TTL", help="seconds a finished result stays answerable")
    max_datagram: int = option(DEFAULT_MAX_DATAGRAM, "--max-datagram", env="HYDRAMESH_MAX_DATAGRAM", help="largest datagram sent, in bytes")
    cluster_key_file: Path | None = cluster_key_file_option()
    node: str = option("", "--node", env="HEAD_NODE", help="name of this head in logs (default: host name)")
    log_level: str = log_level_option()
    log_format: str = log_format_option()
    seed: int | None = option(None, "--seed", env="HEAD_SEED", help="seed of the head's own randomness (tests)")
