"""Real packet loss: the kernel drops 10% of all UDP datagrams (nftables'
``numgen random`` in the input hook of a private network namespace's
loopback) under a head, two workers and a client running as processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
LOSS_PERCENT = 10
SCENARIO = Path(__file__).with_name("real_loss_scenario.py")


def _run(*argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture
def lossy_namespace():
    if not (shutil.which("ip") and shutil.which("nft")):
        pytest.skip("needs iproute2 and nftables (.ci/run installs them)")
    name = f"hydramesh-{uuid.uuid4().hex[:8]}"
    try:
        _run("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.strip()}")
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        ruleset = (
            "table inet hydramesh_faults {\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    meta l4proto udp numgen random mod 100 < {LOSS_PERCENT} counter drop\n"
            "  }\n"
            "}\n"
        )
        _run("ip", "netns", "exec", name, "nft", "-f", "-", input=ruleset)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_exactly_once_byte_exact_under_kernel_packet_loss(lossy_namespace, models_dir, tmp_path):
    log = tmp_path / "cluster.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        ["ip", "netns", "exec", lossy_namespace, sys.executable, str(SCENARIO), "--models-dir", str(models_dir), "--log", str(log)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, f"{result.stderr[-3000:]}\ncluster log:\n{log.read_text()[-3000:] if log.exists() else ''}"
    summary = json.loads(result.stdout)
    first, second = summary["rounds"]
    assert len(first) == 10 and first == second  # every request answered, the same bytes both times
    assert summary["counts"]["admitted"] == 20 and summary["counts"]["completed"] == 20
    assert summary["counts"].get("failed", 0) == 0
    rules = _run("ip", "netns", "exec", lossy_namespace, "nft", "list", "ruleset").stdout
    dropped = int(re.search(r"counter packets (\d+)", rules).group(1))
    assert dropped > 0, "the kernel dropped nothing: the test proved nothing"
