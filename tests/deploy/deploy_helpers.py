"""Helpers of the deployment checks (tests/deploy).

The checks call external tools (hadolint, docker-compose, kubectl,
kubernetes-validate, yamllint, systemd-analyze, nix-instantiate) that
`.ci/install-deploy-tools` installs. A missing tool skips its checks locally
and fails them in CI (when the CI environment variable is set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NIX_DIR = Path(__file__).resolve().parent / "nix"


def tools_dir() -> Path:
    """Where .ci/install-deploy-tools puts its venv (keep in step with it)."""
    if os.environ.get("HYDRAMESH_DEPLOY_TOOLS"):
        return Path(os.environ["HYDRAMESH_DEPLOY_TOOLS"])
    if os.geteuid() == 0:
        return Path("/opt/hydramesh-deploy-tools")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "hydramesh-deploy-tools"


def find_tool(name: str) -> str | None:
    candidate = tools_dir() / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        message = f"{name} is not installed: run `bash .ci/install-deploy-tools`"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so a missing tool is a failure)")
        pytest.skip(message)
    return path


def run(args: list[str], *, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 120)
    proc = subprocess.run(args, check=False, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def yaml_documents(text: str) -> list:
    """Parse YAML with the tools venv's PyYAML (the project's venv needs none)."""
    python = tools_dir() / "bin" / "python"
    if not python.exists():
        require_tool("kubernetes-validate")  # skips or fails with the install hint
    proc = run(
        [
            str(python),
            "-c",
            (
                "import json, sys, yaml; "
                "json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)"
            ),
        ],
        input=text,
    )
    return json.loads(proc.stdout)


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    # nix-bin from apt expects a nixbld group that this machine need not have;
    # evaluation only, nothing is built.
    env["NIX_CONFIG"] = "build-users-group =\n" + env.get("NIX_CONFIG", "")
    return env


def nix_eval_json(expr_file: Path, **args: str) -> object:
    nix = require_tool("nix-instantiate")
    cmd = [nix, "--eval", "--strict", "--json", str(expr_file)]
    for name, value in args.items():
        cmd += ["--arg", name, value]
    proc = run(cmd, env=nix_env())
    return json.loads(proc.stdout)


def nix_eval_expr_json(expr: str) -> object:
    nix = require_tool("nix-instantiate")
    proc = run([nix, "--eval", "--strict", "--json", "-E", expr], env=nix_env(), cwd=REPO)
    return json.loads(proc.stdout)


def nixpkgs_lib_path() -> Path | None:
    """The nixpkgs lib snapshot (NIXPKGS_LIB_PATH): a folder holding lib/, or lib/ itself."""
    raw = os.environ.get("NIXPKGS_LIB_PATH")
    if not raw:
        return None
    path = Path(raw).resolve()
    if (path / "lib" / "default.nix").is_file():
        return path
    if (path / "default.nix").is_file() and (path / "modules.nix").is_file():
        return path.parent
    return None


# The command-line contract of the console scripts (flags, and their
# environment twins) that every deployment here must stay within.
CONTRACT_FLAGS = {
    "hydramesh-head": {
        "--host", "--port", "--http-port", "--queue-max", "--max-attempts",
        "--heartbeat-timeout", "--cluster-key-file", "--log-level", "--log-format",
    },
    "hydramesh-worker": {
        "--head-ip", "--head-port", "--host", "--port", "--http-port", "--model-path",
        "--models-dir", "--backend", "--device", "--dtype", "--offload", "--max-batch",
        "--capacity", "--worker-id", "--heartbeat-interval", "--cluster-key-file",
    },
    "hydramesh-shim": {
        "--host", "--ingress-port", "--node-target", "--http-port", "--api-key-file", "--allow",
    },
}  # fmt: skip
COMMON_ENV = {"HYDRAMESH_CLUSTER_KEY_FILE", "HYDRAMESH_LOG_LEVEL", "HYDRAMESH_LOG_FORMAT"}
CONTRACT_ENV = {
    "hydramesh-head": {
        "HEAD_HOST", "HEAD_PORT", "HEAD_HTTP_PORT", "HEAD_QUEUE_MAX", "HEAD_MAX_ATTEMPTS",
        "HEAD_HEARTBEAT_TIMEOUT",
    } | COMMON_ENV,
    "hydramesh-worker": {
        "WORKER_HEAD_IP", "WORKER_HEAD_PORT", "WORKER_HOST", "WORKER_PORT", "WORKER_HTTP_PORT",
        "WORKER_MODEL_PATH", "WORKER_MODELS_DIR", "WORKER_BACKEND", "WORKER_DEVICE",
        "WORKER_DTYPE", "WORKER_OFFLOAD", "WORKER_MAX_BATCH", "WORKER_CAPACITY", "WORKER_ID",
        "HF_TOKEN", "HF_TOKEN_FILE", "HF_HOME",
    } | COMMON_ENV,
    "hydramesh-shim": {
        "SHIM_HOST", "SHIM_INGRESS_PORT", "SHIM_NODE_TARGET", "SHIM_HTTP_PORT",
        "SHIM_API_KEY_FILE", "SHIM_ALLOW",
    } | COMMON_ENV,
}  # fmt: skip
# Variables of the runtime around the program (GPU pinning, caches, Python, NVIDIA
# toolkit) that deployments may set besides the contract's.
RUNTIME_ENV = {
    "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_CACHE_PATH", "MIOPEN_USER_DB_PATH",
    "MIOPEN_CUSTOM_CACHE_DIR", "HOME", "XDG_CACHE_HOME", "PATH", "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE", "NVIDIA_DRIVER_CAPABILITIES", "NVIDIA_VISIBLE_DEVICES",
}  # fmt: skip


def flags_of(argv: list[str]) -> list[str]:
    """The --flags of an argument list (--flag value or --flag=value)."""
    return [a.split("=", 1)[0] for a in argv if a.startswith("--")]


def flag_values(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
            else:
                name, value = arg, argv[i + 1] if i + 1 < len(argv) else ""
                i += 1
            out.setdefault(name, []).append(value)
        i += 1
    return out
