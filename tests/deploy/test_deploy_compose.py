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

from .deploy_helpers import (
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
MULTI_GPU = "docker-compose.multi-gpu.yml"
CLUSTER_KEY = "docker-compose.cluster-key.yml"
OVERRIDES = [ROCM, MULTI_GPU, CLUSTER_KEY]
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
    for name in (BASE, *OVERRIDES):
        shutil.copy(CONTAINERS / name, dest / name)
    return dest


def test_compose_files_are_all_known():
    assert {p.name for p in CONTAINERS.glob("docker-compose*.yml")} == {BASE, *OVERRIDES}


@pytest.mark.parametrize("override", [None, *OVERRIDES])
def test_compose_config_quiet_validates(override):
    compose = require_tool("docker-compose")
    args = [compose, "-f", str(CONTAINERS / BASE)]
    if override:
        args += ["-f", str(CONTAINERS / override)]
    run([*args, "config", "-q"], env=compose_env(RENDER_GID="109"))


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
    for override in [None, *OVERRIDES]:
        files = (BASE, override) if override else (BASE,)
        services = compose_config(project, *files, env=compose_env(RENDER_GID="109"))["services"]
        for name, svc in services.items():
            program = PROGRAM[name.split("-")[0]]
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


def test_multi_gpu_pins_one_gpu_per_worker(project):
    services = compose_config(project, BASE, MULTI_GPU)["services"]
    workers = {n: s for n, s in services.items() if n.startswith("worker")}
    assert set(workers) == {"worker", "worker-1"}
    seen_gpus, seen_ports = [], []
    for name, svc in workers.items():
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert "count" not in device and device["driver"] == "nvidia", name
        seen_gpus += device["device_ids"]
        argv = svc["command"]
        seen_ports.append(argv[argv.index("--http-port") + 1] if "--http-port" in argv else "7790")
        # everything else as the reference worker
        assert argv[:4] == [
            "--head-ip",
            "127.0.0.1",
            "--model-path",
            "/models/my_custom_model.safetensors",
        ]
        assert svc["network_mode"] == "host" and svc["restart"] == "always"
        assert {v["target"] for v in svc["volumes"]} == {"/models", "/data/huggingface"}
        assert svc["environment"]["HF_HOME"] == "/data/huggingface"
    assert sorted(seen_gpus) == ["0", "1"]
    assert sorted(seen_ports) == ["7790", "7791"]


def test_cluster_key_override(project):
    cfg = compose_config(project, BASE, CLUSTER_KEY)
    assert Path(cfg["secrets"]["cluster-key"]["file"]) == project / "cluster.key"
    for name, svc in cfg["services"].items():
        assert [s["source"] for s in svc["secrets"]] == ["cluster-key"], name
        assert svc["environment"]["HYDRAMESH_CLUSTER_KEY_FILE"] == "/run/secrets/cluster-key", name
    # the reference settings are kept, not replaced
    assert cfg["services"]["shim"]["environment"]["SHIM_NODE_TARGET"] == "127.0.0.1:7777"
    assert cfg["services"]["worker"]["environment"]["HF_HOME"] == "/data/huggingface"


def test_secrets_are_git_ignored():
    ignored = (CONTAINERS / ".gitignore").read_text().split()
    assert {".env", "cluster.key", "local-models/", "model-cache/"} <= set(ignored)


def test_yaml_lint():
    yamllint = require_tool("yamllint")
    config = REPO / "tests" / "deploy" / "yamllint.yaml"
    run([yamllint, "--strict", "-c", str(config), str(CONTAINERS)])
