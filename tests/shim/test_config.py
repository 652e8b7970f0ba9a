"""The shim's flags and environment twins: operators' compose files use these names."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from hydramesh.common.config import parse_config
from hydramesh.shim.config import MAX_INGRESS_DATAGRAM, ShimConfig
from hydramesh.shim.service import resolve


def test_defaults():
    config = parse_config(ShimConfig, [], {})
    assert (config.host, config.ingress_port, config.node_target, config.http_port) == ("0.0.0.0", 9999, "127.0.0.1:7777", 8080)
    assert config.status_url == "http://127.0.0.1:7780/status"
    assert config.api_key_file is None and config.allow == () and config.cluster_key_file is None


def test_environment_twins_have_the_documented_names():
    env = {
        "SHIM_HOST": "127.0.0.1",
        "SHIM_INGRESS_PORT": "9000",
        "SHIM_NODE_TARGET": "head:7777",
        "SHIM_HTTP_PORT": "-1",
        "SHIM_API_KEY_FILE": "/run/keys",
        "SHIM_ALLOW": "10.0.0.0/8, 192.168.0.0/16",
        "SHIM_RATE": "5",
        "SHIM_BURST": "7",
        "SHIM_MAX_DATAGRAM": "2048",
        "SHIM_MAX_IMAGES": "8",
        "HYDRAMESH_CLUSTER_KEY_FILE": "/run/cluster.key",
        "HYDRAMESH_LOG_LEVEL": "debug",
        "HYDRAMESH_LOG_FORMAT": "json",
    }
    config = parse_config(ShimConfig, [], env)
    assert config.host == "127.0.0.1" and config.ingress_port == 9000 and config.node_target == "head:7777"
    assert config.http_port == -1 and config.api_key_file == Path("/run/keys")
    assert config.allow == ("10.0.0.0/8", "192.168.0.0/16")
    assert (config.rate, config.burst, config.max_datagram, config.max_images) == (5.0, 7, 2048, 8)
    assert config.cluster_key_file == Path("/run/cluster.key")
    assert (config.log_level, config.log_format) == ("debug", "json")
    assert config.status_url == "http://head:7780/status"
    # A flag wins over its environment twin.
    assert parse_config(ShimConfig, ["--ingress-port", "9001"], env).ingress_port == 9001


def test_flags():
    config = parse_config(
        ShimConfig,
        ["--node-target", "[::1]:7000", "--allow", "10.0.0.0/8", "--allow", "::1", "--head-status-url", "http://h/status"],
        {},
    )
    assert config.head_host_port == ("::1", 7000) and config.allow == ("10.0.0.0/8", "::1")
    assert config.status_url == "http://h/status"
    assert ShimConfig(node_target="[::1]:7000").status_url == "http://[::1]:7780/status"


@pytest.mark.parametrize(
    "argv",
    [
        ["--ingress-port", "70000"],
        ["--http-port", "-2"],
        ["--node-target", "nowhere:port"],
        ["--allow", "10.0.0.0/33"],
        ["--rate", "-1"],
        ["--burst", "0"],
        ["--max-images", "0"],
        ["--max-datagram", str(MAX_INGRESS_DATAGRAM + 1)],
        ["--mapping-ttl", "0"],
        ["--log-level", "loud"],
    ],
)
def test_bad_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(ShimConfig, argv, {}, prog="hydramesh-shim")
    assert info.value.code == 2
    assert "hydramesh-shim: error:" in capsys.readouterr().err


async def test_a_host_name_target_is_resolved():
    assert await resolve("localhost", 7777) == ("127.0.0.1", 7777)
    with pytest.raises(OSError):
        with trio.fail_after(10):
            await resolve("no-such-host.invalid", 7777)
