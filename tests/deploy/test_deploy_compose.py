"""containers/docker-compose.yml (and the ROCm override) validate with a compose
v2 binary, offline, and are the reference deployment: host network, the
reference environment, command line, volumes, GPU reservation and HF_TOKEN
from .env."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from deploy_helpers import (
    CONTRACT_ENV,
    CONTRACT_FLAGS,
    REPO,
    RUNTIME_ENV,
    flags_of,
    require_tool,
    run,
)

CONTAINERS = REPO / "containers"
BASE = "docker-compose.yml"
ROCM = "docker-compose.rocm.yml"
PROGRAM = {"head": "hydramesh-head", "shim": "hydramesh-shim", "worker": "hydramesh-worker"}


def compose_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("HF_", "HYDRAMESH_", "RENDER_", "VIDEO_", "HIP_", "COMPOSE_", "DOCKER_")
        )
    }
    env.update(extra)
    return env


def compose_config(project: Path, *files: str, env: dict[str, str] | None = None, check=True):
    compose = require_tool("docker-compose")
    args = [compose]
    for f in files:
        args += ["-f", str(project / f)]
    args += ["config", "--format", "json"]
    proc = run(args, check=check, env=env if env is not None else compose_env(), cwd=project)
    return proc if not check else json.loads(proc.stdout)


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of containers/ (so a test's .env never touches the working tree)."""
    dest = tmp_path / "containers"
    dest.mkdir()
    for name in (BASE, ROCM):
        shutil.copy(CONTAINERS / name, dest / name)
    return dest


def test_compose_config_quiet_validates():
    compose = require_tool("docker-compose")
    run([compose, "-f", str(CONTAINERS / BASE), "config", "-q"], env=compose_env())
    run(
        [compose, "-f", str(CONTAINERS / BASE), "-f", str(CONTAINERS / ROCM), "config", "-q"],
        env=compose_env(RENDER_GID="109"),
    )


def test_reference_deployment(project):
    cfg = compose_config(project, BASE)
    services = cfg["services"]
    assert set(services) == {"shim", "head", "worker"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host", name
        assert svc["restart"] == "always", name
        assert "ports" not in svc, f"{name}: ports mean nothing on the host network"
        # graceful drain takes up to ~30 s
        assert svc["stop_grace_period"] in {"40s", "45s", "1m"}, name
        assert (
            svc["build"]["dockerfile"]
            == f"containers/{svc['image'].split('/')[1].split(':')[0]}.Containerfile"
        )
        assert Path(svc["build"]["context"]) == project.parent

    shim = services["shim"]
    assert shim["environment"] == {
        "SHIM_INGRESS_PORT": "9999",
        "SHIM_NODE_TARGET": "127.0.0.1:7777",
    }
    assert shim["image"].startswith("hydramesh/shim:")
    assert services["head"]["image"].startswith("hydramesh/head:")

    worker = services["worker"]
    assert worker["image"].startswith("hydramesh/worker-nvidia:")
    assert worker["command"] == [
        "--head-ip", "127.0.0.1",
        "--model-path", "/models/my_custom_model.safetensors",
    ]  # fmt: skip
    assert worker["environment"]["HF_HOME"] == "/data/huggingface"
    mounts = {(v["source"], v["target"]) for v in worker["volumes"]}
    assert mounts == {
        (str(project / "local-models"), "/models"),
        (str(project / "model-cache"), "/data/huggingface"),
    }
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert device["capabilities"] == ["gpu"]
    assert worker["user"] == "10001:10001"  # the image's user unless .env says otherwise


def test_environment_and_flags_within_the_contract(project):
    for files, env in [((BASE,), {}), ((BASE, ROCM), {"RENDER_GID": "109"})]:
        services = compose_config(project, *files, env=compose_env(**env))["services"]
        for name, svc in services.items():
            program = PROGRAM[name]
            extra = set(svc.get("environment") or {}) - CONTRACT_ENV[program] - RUNTIME_ENV
            assert not extra, f"{name}: environment outside the contract: {extra}"
            unknown = set(flags_of(svc.get("command") or [])) - CONTRACT_FLAGS[program]
            assert not unknown, f"{name}: flags outside the contract: {unknown}"


def test_hf_token_comes_from_dotenv(project):
    (project / ".env").write_text(
        "HF_TOKEN=hf_from_dotenv\nHYDRAMESH_UID=1234\nHYDRAMESH_GID=1234\n"
    )
    worker = compose_config(project, BASE)["services"]["worker"]
    assert worker["environment"]["HF_TOKEN"] == "hf_from_dotenv"
    assert worker["user"] == "1234:1234"
    # and only the worker gets it
    services = compose_config(project, BASE)["services"]
    assert "HF_TOKEN" not in (services["head"].get("environment") or {})
    assert "HF_TOKEN" not in (services["shim"].get("environment") or {})


def test_hf_token_absent_is_empty_not_an_error(project):
    worker = compose_config(project, BASE)["services"]["worker"]
    assert worker["environment"]["HF_TOKEN"] == ""


def test_rocm_override(project):
    (project / ".env").write_text("RENDER_GID=109\n")
    cfg = compose_config(project, BASE, ROCM)
    worker = cfg["services"]["worker"]
    assert worker["image"].startswith("hydramesh/worker-rocm:")
    assert worker["build"]["dockerfile"] == "containers/worker-rocm.Containerfile"
    assert {d["source"] for d in worker["devices"]} == {"/dev/kfd", "/dev/dri"}
    assert set(worker["group_add"]) == {"44", "109"}
    assert "deploy" not in worker, "the NVIDIA reservation must be gone"
    assert worker["environment"]["HIP_VISIBLE_DEVICES"] == "0"
    # the reference parts stay
    assert worker["command"][:2] == ["--head-ip", "127.0.0.1"]
    assert worker["environment"]["HF_HOME"] == "/data/huggingface"
    assert worker["network_mode"] == "host"
    base = compose_config(project, BASE)
    assert cfg["services"]["head"] == base["services"]["head"]
    assert cfg["services"]["shim"] == base["services"]["shim"]


def test_rocm_override_demands_the_render_gid(project):
    proc = compose_config(project, BASE, ROCM, check=False)
    assert proc.returncode != 0
    assert "RENDER_GID" in proc.stderr


def test_yaml_lint():
    yamllint = require_tool("yamllint")
    config = REPO / "tests" / "deploy" / "yamllint.yaml"
    run([yamllint, "--strict", "-c", str(config), str(CONTAINERS)])
