"""The worker's configuration: flags with environment twins (DESIGN §6)."""

from __future__ import annotations

from pathlib import Path

import attrs

from hydramesh.common.chunking import DEFAULT_MAX_DATAGRAM
from hydramesh.common.config import cluster_key_file_option, log_format_option, log_level_option, option

from .models import PIPELINES

BACKENDS = ("diffusers", "null")
DEVICES = ("auto", "cuda", "rocm", "cpu")
DTYPES = ("auto", "float16", "bfloat16", "float32")
OFFLOAD = ("none", "model", "sequential", "auto")


@attrs.frozen
class WorkerConfig:
    head_ip: str = option("127.0.0.1", "--head-ip", env="WORKER_HEAD_IP", help="address of the head")
    head_port: int = option(7777, "--head-port", env="WORKER_HEAD_PORT", help="UDP port of the head")
    host: str = option("0.0.0.0", "--host", env="WORKER_HOST", help="address to bind the worker's UDP socket on")
    port: int = option(0, "--port", env="WORKER_PORT", help="UDP port of the worker (0 picks a free one)")
    http_host: str = option("0.0.0.0", "--http-host", env="WORKER_HTTP_HOST", help="address of the metrics HTTP server")
    http_port: int = option(7790, "--http-port", env="WORKER_HTTP_PORT", help="HTTP port for /metrics and /healthz; -1 disables")
    backend: str = option("diffusers", "--backend", env="WORKER_BACKEND", choices=BACKENDS, help="inference backend ('null' renders test patterns, no ML)")
    model_path: tuple[str, ...] = option(
        (),
        "--model-path",
        env="WORKER_MODEL_PATH",
        repeat=True,
        help="model to serve: Hub id, diffusers directory or .safetensors file (repeatable; default: the embedded tiny model)",
    )
    models_dir: Path = option(Path("local-models"), "--models-dir", env="WORKER_MODELS_DIR", help="directory local model paths must lie in")
    model_config: str | None = option(
        None,
        "--model-config",
        env="WORKER_MODEL_CONFIG",
        help="diffusers directory or Hub id with the configs for single-file checkpoints (default: a same-named directory beside the file)",
    )
    pipeline: str = option("auto", "--pipeline", env="WORKER_PIPELINE", choices=PIPELINES, help="pipeline of single-file checkpoints (auto: from the file's keys)")
    max_loaded: int = option(2, "--max-loaded", env="WORKER_MAX_LOADED", help="models kept in memory at once; the least recently used is evicted")
    warmup: bool = option(True, "--warmup", env="WORKER_WARMUP", help="run one tiny image per loaded model before taking work")
    env_file: Path = option(Path(".env"), "--env-file", env="WORKER_ENV_FILE", help="file with HF_TOKEN=… when the environment has none")
    device: str = option("auto", "--device", env="WORKER_DEVICE", choices=DEVICES, help="accelerator to run on")
    dtype: str = option("auto", "--dtype", env="WORKER_DTYPE", choices=DTYPES, help="weights precision (auto: float16 on GPU, float32 on CPU)")
    offload: str = option("none", "--offload", env="WORKER_OFFLOAD", choices=OFFLOAD, help="Accelerate CPU offload")
    capacity: int = option(8, "--capacity", env="WORKER_CAPACITY", help="tasks held at once, queued and running")
    max_batch: int = option(4, "--max-batch", env="WORKER_MAX_BATCH", help="compatible requests run in one pipeline call")
    worker_id: str = option("", "--worker-id", env="WORKER_ID", help="name in the cluster (default: host:port)")
    heartbeat_interval: float = option(1.0, "--heartbeat-interval", env="WORKER_HEARTBEAT_INTERVAL", help="seconds between heartbeats")
    result_ttl: float = option(300.0, "--result-ttl", env="WORKER_RESULT_TTL", help="seconds a finished result stays re-sendable")
    result_cache_mb: int = option(256, "--result-cache-mb", env="WORKER_RESULT_CACHE_MB", help="memory bound of finished results")
    null_delay: float = option(0.0, "--null-delay", env="WORKER_NULL_DELAY", help="seconds the null backend spends per image")
    max_datagram: int = option(DEFAULT_MAX_DATAGRAM, "--max-datagram", env="HYDRAMESH_MAX_DATAGRAM", help="largest datagram sent, in bytes")
    cluster_key_file: Path | None = cluster_key_file_option()
    log_level: str = log_level_option()
    log_format: str = log_format_option()
