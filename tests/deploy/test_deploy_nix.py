"""Nix: every .nix file parses; the NixOS module evaluates (options, types,
generated units, firewall, warnings, assertions) against nixpkgs' lib; the flake
exposes the outputs the operator docs promise. The evaluations need a nixpkgs
lib snapshot (NIXPKGS_LIB_PATH) and skip, saying so, without one."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

from .deploy_helpers import (
    CONTRACT_ENV,
    CONTRACT_FLAGS,
    REPO,
    RUNTIME_ENV,
    flag_values,
    flags_of,
    nix_env,
    require_tool,
    run,
)

STUB_STORE = "/nix/store/00000000000000000000000000000000-"


def nix_files():
    skip = {".git", ".venv", "node_modules"}
    return sorted(
        p for p in REPO.rglob("*.nix") if not skip.intersection(p.relative_to(REPO).parts)
    )


def test_there_are_nix_files():
    names = {p.relative_to(REPO).as_posix() for p in nix_files()}
    assert {"flake.nix", "modules/hydramesh.nix", "modules/hardening.nix"} <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_nix_file_parses(path):
    nix = require_tool("nix-instantiate")
    proc = run([nix, "--parse", str(path)], check=False, env=nix_env())
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr.strip(), proc.stderr


# --- the module ----------------------------------------------------------------------


def exec_argv(unit: dict) -> list[str]:
    exec_start = unit["serviceConfig"]["ExecStart"]
    # systemd unescapes %% and $$; the arguments are double-quoted.
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(exec_start)]


def program_of(unit: dict) -> str:
    return exec_argv(unit)[0].rsplit("/", 1)[1]


def package_of(unit: dict) -> str:
    path = exec_argv(unit)[0]
    assert path.startswith(STUB_STORE), path
    return path[len(STUB_STORE) :].split("/", 1)[0]


def scenario(module_eval, name):
    return module_eval["scenarios"][name]


def test_every_generated_command_line_is_within_the_contract(module_eval):
    for name, result in module_eval["scenarios"].items():
        for unit_name, unit in result["services"].items():
            program = program_of(unit)
            argv = exec_argv(unit)[1:]
            unknown = set(flags_of(argv)) - CONTRACT_FLAGS[program]
            assert not unknown, f"{name}/{unit_name}: flags outside the contract: {unknown}"
            env = set(unit["environment"]) - CONTRACT_ENV[program] - RUNTIME_ENV
            assert not env, f"{name}/{unit_name}: environment outside the contract: {env}"


def test_generated_units_keep_the_hardening_table(module_eval, hardening):
    for name, result in module_eval["scenarios"].items():
        for unit_name, unit in result["services"].items():
            cfg = unit["serviceConfig"]
            if unit_name.startswith("hydramesh-worker-"):
                device = unit["description"].rsplit("(", 1)[1].rstrip(")")
                table = hardening["worker"][device]
            else:
                table = hardening[unit_name.removeprefix("hydramesh-")]
            for key, value in table.items():
                assert cfg.get(key) == value, (
                    f"{name}/{unit_name}: {key}={cfg.get(key)!r}, table says {value!r}"
                )


def test_all_in_one(module_eval):
    result = scenario(module_eval, "allInOne")
    services = result["services"]
    assert sorted(services) == [
        "hydramesh-head",
        "hydramesh-shim",
        "hydramesh-worker-0",
        "hydramesh-worker-1",
    ]
    assert result["warnings"] == [] and result["failedAssertions"] == []

    head = services["hydramesh-head"]
    assert package_of(head) == "hydramesh"  # no torch on the head
    hv = flag_values(exec_argv(head)[1:])
    assert hv["--port"] == ["7777"] and hv["--http-port"] == ["7780"]
    assert head["wantedBy"] == ["multi-user.target"]

    shim = services["hydramesh-shim"]
    assert package_of(shim) == "hydramesh"
    sv = flag_values(exec_argv(shim)[1:])
    assert sv["--ingress-port"] == ["9999"] and sv["--node-target"] == ["127.0.0.1:7777"]
    assert sv["--http-port"] == ["8080"] and sv["--allow"] == ["10.0.0.0/8,192.168.0.0/16"]
    assert "hydramesh-head.service" in shim["after"]
    assert shim["environment"]["SHIM_API_KEY_FILE"] == "%d/api-keys"
    assert "api-keys:/run/keys/shim-api-keys" in shim["serviceConfig"]["LoadCredential"]

    # the secret reaches every service as a credential, never as a value
    for unit in services.values():
        assert (
            "cluster-key:/run/keys/hydramesh-cluster-key" in unit["serviceConfig"]["LoadCredential"]
        )
        assert unit["environment"]["HYDRAMESH_CLUSTER_KEY_FILE"] == "%d/cluster-key"
        assert unit["environment"]["HYDRAMESH_LOG_FORMAT"] == "json"

    for i in (0, 1):
        worker = services[f"hydramesh-worker-{i}"]
        assert package_of(worker) == "hydramesh-worker-cuda"
        wv = flag_values(exec_argv(worker)[1:])
        assert wv["--device"] == ["cuda"]
        assert wv["--http-port"] == [str(7790 + i)]  # one HTTP port per instance
        assert wv["--port"] == [str(7800 + i)]
        assert wv["--head-ip"] == ["127.0.0.1"] and wv["--head-port"] == ["7777"]
        assert wv["--model-path"] == [
            "/var/lib/hydramesh/models/my_custom_model.safetensors",
            "stabilityai/sd-turbo",
        ]
        assert wv["--models-dir"] == ["/var/lib/hydramesh/models"]
        env = worker["environment"]
        assert env["CUDA_VISIBLE_DEVICES"] == str(i)
        assert "HIP_VISIBLE_DEVICES" not in env
        assert env["WORKER_ID"] == f"%H-gpu{i}"
        assert env["HF_HOME"] == "/var/cache/hydramesh/huggingface"
        assert env["HF_TOKEN_FILE"] == "%d/hf-token" and "HF_TOKEN" not in env
        cfg = worker["serviceConfig"]
        assert "hf-token:/run/keys/hf-token" in cfg["LoadCredential"]
        assert cfg["StateDirectory"] == "hydramesh/models"
        assert cfg["CacheDirectory"] == "hydramesh"
        assert cfg["OOMScoreAdjust"] == "-500"
        assert cfg["User"] == "hydramesh-worker"  # instances share models and cache
        assert cfg["PrivateDevices"] is False and cfg["DevicePolicy"] == "closed"
        assert all("nvidia" in d for d in cfg["DeviceAllow"])

    assert sorted(result["firewall"]["udp"]) == [7777, 7800, 7801, 9999]
    assert sorted(result["firewall"]["tcp"]) == [7780, 7790, 7791, 8080]


def test_rocm_workers(module_eval):
    result = scenario(module_eval, "rocmWorkers")
    services = result["services"]
    assert sorted(services) == [f"hydramesh-worker-{i}" for i in range(3)]
    for i in range(3):
        worker = services[f"hydramesh-worker-{i}"]
        assert package_of(worker) == "hydramesh-worker-rocm"
        wv = flag_values(exec_argv(worker)[1:])
        assert wv["--device"] == ["rocm"] and wv["--head-ip"] == ["10.1.2.3"]
        assert wv["--port"] == ["0"] and wv["--http-port"] == [str(7790 + i)]
        assert "--model-path" not in wv  # the worker's default model
        env = worker["environment"]
        assert env["HIP_VISIBLE_DEVICES"] == str(i) and "CUDA_VISIBLE_DEVICES" not in env
        assert "HYDRAMESH_CLUSTER_KEY_FILE" not in env
        cfg = worker["serviceConfig"]
        assert cfg["LoadCredential"] == []
        assert cfg["SupplementaryGroups"] == "video render"
        assert set(cfg["DeviceAllow"]) == {"char-drm rw", "char-kfd rw"}
    # not opened unless asked
    assert result["firewall"] == {"tcp": [], "udp": []}
    assert any("clusterKeyFile is not set" in w for w in result["warnings"])


def test_cpu_worker_and_inline_token(module_eval):
    result = scenario(module_eval, "cpuWorker")
    worker = result["services"]["hydramesh-worker-0"]
    assert package_of(worker) == "hydramesh-worker"
    argv = exec_argv(worker)[1:]
    assert flag_values(argv)["--device"] == ["cpu"]
    assert argv[-1] == "--dtype=float32"  # extraArgs come last
    cfg = worker["serviceConfig"]
    assert cfg["PrivateDevices"] is True and "DeviceAllow" not in cfg
    assert "SupplementaryGroups" not in cfg
    env = worker["environment"]
    assert env["HF_TOKEN"] == "hf_inline_token"
    assert "CUDA_VISIBLE_DEVICES" not in env and "HIP_VISIBLE_DEVICES" not in env
    assert any("world-readable Nix store" in w for w in result["warnings"])


def test_enable_alone_warns_and_disabled_does_nothing(module_eval):
    nothing = scenario(module_eval, "nothingEnabled")
    assert nothing["services"] == {}
    assert any("no role is" in w for w in nothing["warnings"])
    disabled = scenario(module_eval, "disabled")
    assert disabled["services"] == {} and disabled["warnings"] == []
    assert disabled["failedAssertions"] == []


def test_secrets_must_stay_out_of_the_store(module_eval):
    failed = "\n".join(scenario(module_eval, "badSecrets")["failedAssertions"])
    assert "clusterKeyFile must be an absolute path outside the Nix store" in failed
    assert "hfTokenFile must be an absolute path outside the Nix store" in failed
    assert "set hfToken or hfTokenFile, not both" in failed


def test_directories_must_be_systemd_managed(module_eval):
    failed = "\n".join(scenario(module_eval, "badDirs")["failedAssertions"])
    assert "modelsDir must lie under /var/lib/" in failed
    assert "cacheDir must lie under /var/cache/" in failed


def test_http_port_clash_is_refused(module_eval):
    failed = scenario(module_eval, "portClash")["failedAssertions"]
    assert any("HTTP ports" in m for m in failed), failed


# --- the flake ------------------------------------------------------------------------


def test_flake_outputs(flake_eval):
    assert flake_eval["inputs"]["nixpkgs"].startswith("github:NixOS/nixpkgs/")
    assert flake_eval["outputArgs"] == ["nixpkgs", "self"]
    assert {"packages", "devShells", "nixosModules", "overlays"} <= set(flake_eval["outputs"])
    packages = set(flake_eval["packages"]["x86_64-linux"])
    assert {
        "default",
        "hydramesh",
        "container-head",
        "container-shim",
        "container-worker-nvidia",
        "container-worker-rocm",
        "iso",
    } <= packages
    assert {"default", "rocm"} <= set(flake_eval["devShells"]["x86_64-linux"])
    assert {"default", "hydramesh"} <= set(flake_eval["nixosModules"])


def test_flake_default_module_brings_the_overlay(flake_eval, module_eval):
    via_flake = flake_eval["viaDefaultModule"]
    assert via_flake["overlays"] == 1
    direct = module_eval["scenarios"]["allInOne"]
    assert json.dumps(via_flake["services"], sort_keys=True) == json.dumps(
        direct["services"], sort_keys=True
    )


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _normalize(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


def test_flake_packages_follow_pyproject(flake_eval):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    pkgs = flake_eval["overlayPackages"]
    assert pkgs["hydramesh"]["version"] == project["version"]

    def names(deps):
        return {_normalize(d) for d in deps}

    base = names(pkgs["hydramesh"]["dependencies"])
    assert not {n for n in base if n.startswith("torch")}, (
        "the head/shim package must carry no torch"
    )
    required = {_requirement_name(r) for r in project["dependencies"]}
    assert required <= base, f"pyproject dependencies missing from flake.nix: {required - base}"

    worker_required = required | {
        _requirement_name(r) for r in project["optional-dependencies"]["worker"]
    }
    torch_of = {
        "hydramesh-worker": "torch",
        "hydramesh-worker-cuda": "torch-bin",
        "hydramesh-worker-rocm": "torchwithrocm",
    }
    for attr, torch in torch_of.items():
        deps = names(pkgs[attr]["dependencies"])
        # the variant's torch stands in for pyproject's "torch"
        have = (deps - {torch}) | {"torch"} if torch in deps else deps
        assert worker_required <= have, f"{attr}: missing {worker_required - have}"
