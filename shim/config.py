"""The shim's configuration: flags with environment twins (DESIGN §6).

The names ``--ingress-port``/``SHIM_INGRESS_PORT``, ``--node-target``/
``SHIM_NODE_TARGET`` and ``--http-port``/``SHIM_HTTP_PORT`` are used by
operators' compose files: they are part of the interface.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from hydramesh.common.config import cluster_key_file_option, log_format_option, log_level_option, option, parse_address
from hydramesh.common.wire import HEADER_SIZE, TAG_SIZE

from .limits import parse_networks

# A DCF datagram may be at most 65507 bytes (the largest UDP payload over
# IPv4). The shim adds a header and maybe a tag, its internal id may be
# longer than the client's, and re-encoding adds "v" and "op": the ingress
# limit leaves room for all of that.
MAX_UDP_PAYLOAD = 65507
MAX_INGRESS_DATAGRAM = MAX_UDP_PAYLOAD - HEADER_SIZE - TAG_SIZE - 128
DEFAULT_HEAD_HTTP_PORT = 7780


@attrs.frozen
class ShimConfig:
    host: str = option("0.0.0.0", "--host", env="SHIM_HOST", help="address to bind the UDP ingress (and, by default, HTTP) on")
    ingress_port: int = option(9999, "--ingress-port", env="SHIM_INGRESS_PORT", help="UDP port for bare-JSON clients (0 picks a free one)")
    node_target: str = option(
        "127.0.0.1:7777", "--node-target", env="SHIM_NODE_TARGET", help="the head's DCF address HOST:PORT (a host name is resolved at start)"
    )
    cluster_port: int = option(
        0, "--cluster-port", env="SHIM_CLUSTER_PORT", help="local UDP port of the shim's DCF socket towards the head (0: any free one)"
    )
    http_host: str | None = option(None, "--http-host", env="SHIM_HTTP_HOST", help="address of the HTTP API (default: --host)")
    http_port: int = option(8080, "--http-port", env="SHIM_HTTP_PORT", help="HTTP port of the OpenAI-compatible API; -1 disables")
    api_key_file: Path | None = option(
        None, "--api-key-file", env="SHIM_API_KEY_FILE", help="file of HTTP API keys, one a line (unset: no key needed)"
    )
    allow: tuple[str, ...] = option(
        (), "--allow", env="SHIM_ALLOW", repeat=True, help="source networks let in (UDP and HTTP), CIDRs, comma-separated (empty: all)"
    )
    rate: float = option(50.0, "--rate", env="SHIM_RATE", help="datagrams per second one source address may send to the ingress; 0 disables")
    burst: int = option(100, "--burst", env="SHIM_BURST", help="datagrams a source may send at once before --rate applies")
    http_rate: float = option(0.0, "--http-rate", env="SHIM_HTTP_RATE", help="HTTP requests per second per client address; 0 disables")
    http_burst: int = option(20, "--http-burst", env="SHIM_HTTP_BURST", help="HTTP requests a client may send at once before --http-rate applies")
    max_datagram: int = option(16384, "--max-datagram", env="SHIM_MAX_DATAGRAM", help="largest ingress datagram accepted, in bytes")
    max_images: int = option(4, "--max-images", env="SHIM_MAX_IMAGES", help="largest 'n' of one HTTP request")
    request_timeout: float = option(
        300.0, "--request-timeout", env="SHIM_REQUEST_TIMEOUT", help="seconds an HTTP request may wait for its images (then 504)"
    )
    mapping_ttl: float = option(
        300.0, "--mapping-ttl", env="SHIM_MAPPING_TTL", help="seconds an ingress request's id mapping lives after its last datagram"
    )
    max_mappings: int = option(65536, "--max-mappings", env="SHIM_MAX_MAPPINGS", help="id mappings held at once (least recently used go first)")
    max_mappings_per_source: int = option(
        1024, "--max-mappings-per-source", env="SHIM_MAX_MAPPINGS_PER_SOURCE", help="id mappings one source address may hold"
    )
    head_status_url: str | None = option(
        None, "--head-status-url", env="SHIM_HEAD_STATUS_URL", help="the head's /status, read for GET /v1/models (default: http://NODE-TARGET-HOST:7780/status)"
    )
    cluster_key_file: Path | None = cluster_key_file_option()
    node: str = option("", "--node", env="SHIM_NODE", help="name of this shim in logs (default: host name)")
    log_level: str = log_level_option()
    log_format: str = log_format_option()

    def __attrs_post_init__(self) -> None:
        # ValueError here becomes a usage error naming the flag (parse_config).
        for flag, value, lo in (
            ("--ingress-port", self.ingress_port, 0),
            ("--cluster-port", self.cluster_port, 0),
            ("--http-port", self.http_port, -1),
        ):
            if not lo <= value <= 65535:
                raise ValueError(f"{flag} must be between {lo} and 65535, got {value}")
        for flag, number, lo in (
            ("--rate", self.rate, 0),
            ("--burst", self.burst, 1),
            ("--http-rate", self.http_rate, 0),
            ("--http-burst", self.http_burst, 1),
            ("--max-images", self.max_images, 1),
            ("--request-timeout", self.request_timeout, 0.001),
            ("--mapping-ttl", self.mapping_ttl, 0.001),
            ("--max-mappings", self.max_mappings, 1),
            ("--max-mappings-per-source", self.max_mappings_per_source, 1),
        ):
            if not number >= lo:  # also catches NaN
                raise ValueError(f"{flag} must be at least {lo:g}, got {number}")
        if not 64 <= self.max_datagram <= MAX_INGRESS_DATAGRAM:
            raise ValueError(f"--max-datagram must be between 64 and {MAX_INGRESS_DATAGRAM}, got {self.max_datagram}")
        parse_address(self.node_target, default_port=7777)
        parse_networks(self.allow)

    @property
    def head_host_port(self) -> tuple[str, int]:
        return parse_address(self.node_target, default_port=7777)

    @property
    def status_url(self) -> str:
        """Where ``GET /v1/models`` learns the cluster's models."""
        if self.head_status_url:
            return self.head_status_url
        host = self.head_host_port[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{DEFAULT_HEAD_HTTP_PORT}/status"
