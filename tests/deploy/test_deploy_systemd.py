"""The plain systemd units (modules/systemd/*.service) and the units that the
NixOS module generates: systemd-analyze verify is clean (stderr read, not only
the exit code), the security exposure is <= 3.0 ("OK"), and both agree with
modules/hardening.nix."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from .deploy_helpers import REPO, require_tool, run

UNIT_DIR = REPO / "modules" / "systemd"
UNITS = {
    "head": "hydramesh-head.service",
    "shim": "hydramesh-shim.service",
    "worker": "hydramesh-worker@.service",
}
MAX_EXPOSURE = 3.0

# Settings a unit may carry besides the shared table: what it runs and with
# which configuration, secrets and directories.
UNIT_SPECIFIC = {
    "ExecStart",
    "Environment",
    "EnvironmentFile",
    "LoadCredential",
    "StateDirectory",
    "CacheDirectory",
    "WorkingDirectory",
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def normalize(value) -> list[str]:
    """A hardening.nix value as the lines NixOS would write."""
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if v is True:
            out.append("yes")
        elif v is False:
            out.append("no")
        else:
            out.append(str(v))
    return out


def normalize_unit_values(values: list[str]) -> list[str]:
    booleans = {"true": "yes", "1": "yes", "on": "yes", "false": "no", "0": "no", "off": "no"}
    return [booleans.get(v, v) for v in values]


def stage_unit(tmp_path: Path, name: str, text: str, instance: str | None = None) -> Path:
    """Copy a unit next to stub executables so `verify` can check ExecStart."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for program in ("hydramesh-head", "hydramesh-shim", "hydramesh-worker"):
        stub = bindir / program
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    text = re.sub(r"/(opt/hydramesh|nix/store/[^/\s\"]+)/bin/", f"{bindir}/", text)
    if instance is not None:
        name = name.replace("@.", f"@{instance}.")
    path = tmp_path / name
    path.write_text(text)
    return path


def verify(path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    proc = run(
        [analyze, "verify", "--man=no", "--generators=no", str(path)], check=False, cwd=path.parent
    )
    # verify exits 0 on unknown keys and bad values and only warns: stderr must be empty.
    assert proc.returncode == 0 and not proc.stderr.strip(), (
        f"systemd-analyze verify {path.name}: rc={proc.returncode}\n{proc.stderr}"
    )


def exposure(path: Path) -> float:
    analyze = require_tool("systemd-analyze")
    proc = run(
        [analyze, "security", "--offline=true", "--no-pager", str(path)],
        check=False,
        cwd=path.parent,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", proc.stdout)
    assert match, f"no exposure level in the output:\n{proc.stdout}\n{proc.stderr}"
    assert not proc.stderr.strip(), proc.stderr
    return float(match.group(1))


# --- plain units -----------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(UNITS))
def test_plain_unit_verifies_clean(role, tmp_path):
    name = UNITS[role]
    instance = "0" if "@" in name else None
    verify(stage_unit(tmp_path, name, (UNIT_DIR / name).read_text(), instance))


def test_worker_template_verifies_for_other_instances(tmp_path):
    text = (UNIT_DIR / UNITS["worker"]).read_text()
    for instance in ("3", "9"):
        verify(stage_unit(tmp_path, UNITS["worker"], text, instance))


@pytest.mark.parametrize("role", sorted(UNITS))
def test_plain_unit_security_exposure_ok(role, tmp_path):
    name = UNITS[role]
    instance = "0" if "@" in name else None
    level = exposure(stage_unit(tmp_path, name, (UNIT_DIR / name).read_text(), instance))
    assert level <= MAX_EXPOSURE, f"{name}: exposure {level} > {MAX_EXPOSURE}"


def test_verify_check_catches_mistakes(tmp_path):
    """The stderr check is what catches what `verify` lets through with exit 0."""
    text = (
        (UNIT_DIR / UNITS["head"])
        .read_text()
        .replace("ProtectHome=yes", "ProtectHome=yes\nProtectHomeDirs=yes\nRestrictRealtime=maybe")
    )
    path = stage_unit(tmp_path, UNITS["head"], text)
    analyze = require_tool("systemd-analyze")
    proc = run(
        [analyze, "verify", "--man=no", "--generators=no", str(path)], check=False, cwd=tmp_path
    )
    assert proc.returncode == 0  # the reason stderr is read at all
    assert "Unknown key 'ProtectHomeDirs'" in proc.stderr, proc.stderr
    assert "Failed to parse boolean value" in proc.stderr, proc.stderr


@pytest.mark.parametrize("role", sorted(UNITS))
def test_plain_unit_runs_the_console_script(role):
    service = parse_unit((UNIT_DIR / UNITS[role]).read_text())["Service"]
    (exec_start,) = service["ExecStart"]
    assert shlex.split(exec_start)[0] == f"/opt/hydramesh/bin/hydramesh-{role}"


@pytest.mark.parametrize("role", sorted(UNITS))
def test_plain_unit_takes_the_cluster_key_as_a_credential(role):
    service = parse_unit((UNIT_DIR / UNITS[role]).read_text())["Service"]
    assert "cluster-key:/etc/hydramesh/cluster.key" in service["LoadCredential"]
    assert "HYDRAMESH_CLUSTER_KEY_FILE=%d/cluster-key" in service["Environment"]
    # never the secret itself in the unit
    assert not any("KEY=" in e and "FILE" not in e for e in service["Environment"])


def test_plain_worker_pins_one_gpu_per_instance():
    service = parse_unit((UNIT_DIR / UNITS["worker"]).read_text())["Service"]
    env = dict(e.split("=", 1) for e in service["Environment"])
    assert env["CUDA_VISIBLE_DEVICES"] == "%i"
    assert env["HIP_VISIBLE_DEVICES"] == "%i"
    assert env["WORKER_HTTP_PORT"] == "779%i"  # distinct HTTP port per instance
    assert env["HF_HOME"].startswith("%C/")  # CacheDirectory
    assert env["WORKER_MODELS_DIR"].startswith("%S/")  # StateDirectory
    assert service["StateDirectory"] and service["CacheDirectory"]


# --- plain units == hardening.nix -------------------------------------------------


def sandbox_settings(service: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: normalize_unit_values(v) for k, v in service.items() if k not in UNIT_SPECIFIC}


@pytest.mark.parametrize("role", sorted(UNITS))
def test_plain_unit_matches_hardening_table(role, hardening):
    expected_raw = hardening["worker"]["any"] if role == "worker" else hardening[role]
    expected = {k: normalize(v) for k, v in expected_raw.items()}
    actual = sandbox_settings(parse_unit((UNIT_DIR / UNITS[role]).read_text())["Service"])
    missing = {k: v for k, v in expected.items() if k not in actual}
    extra = {k: v for k, v in actual.items() if k not in expected}
    differ = {
        k: (actual[k], expected[k]) for k in expected if k in actual and actual[k] != expected[k]
    }
    assert not missing and not extra and not differ, (
        f"{UNITS[role]} vs modules/hardening.nix:\n missing {missing}\n extra {extra}\n "
        f"differ (unit, table) {differ}"
    )


def test_hardening_table_is_what_the_issue_asks(hardening):
    for role, table in [("head", hardening["head"]), ("shim", hardening["shim"])] + [
        (f"worker-{d}", hardening["worker"][d]) for d in ("nvidia", "rocm", "cpu", "any")
    ]:
        assert table["DynamicUser"] is True, role
        assert table["ProtectSystem"] == "strict", role
        assert table["ProtectHome"] is True and table["PrivateTmp"] is True, role
        assert table["NoNewPrivileges"] is True, role
        assert table["CapabilityBoundingSet"] == "", role
        assert table["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX", role
        assert table["SystemCallFilter"][0] == "@system-service", role
        assert table["Restart"] == "always", role
        assert int(table["TimeoutStopSec"]) >= 30, role  # graceful drain
        assert table["DevicePolicy"] == "closed", role
    # GPU device access only for GPU workers
    for role in ("head", "shim"):
        assert hardening[role]["PrivateDevices"] is True and "DeviceAllow" not in hardening[role]
        assert "OOMScoreAdjust" not in hardening[role]
    cpu = hardening["worker"]["cpu"]
    assert cpu["PrivateDevices"] is True and "DeviceAllow" not in cpu
    nvidia = hardening["worker"]["nvidia"]["DeviceAllow"]
    rocm = hardening["worker"]["rocm"]["DeviceAllow"]
    assert all("nvidia" in d for d in nvidia) and not any("nvidia" in d for d in rocm)
    assert {"char-kfd rw", "char-drm rw"} <= set(rocm)
    for device in ("nvidia", "rocm", "cpu", "any"):
        assert hardening["worker"][device]["OOMScoreAdjust"] == "-500"


# --- units generated by the NixOS module ---------------------------------------------


def render_nixos_unit(unit: dict) -> str:
    """Write a module-generated unit the way NixOS does (close enough for verify/security)."""

    def value(v) -> str:
        if v is True:
            return "true"
        if v is False:
            return "false"
        return str(v)

    lines = ["[Unit]", f"Description={unit['description']}"]
    for dep in unit["after"]:
        lines.append(f"After={dep}")
    lines += ["", "[Service]"]
    for key, val in sorted(unit["environment"].items()):
        lines.append(f'Environment="{key}={val}"')
    for key, val in sorted(unit["serviceConfig"].items()):
        for v in val if isinstance(val, list) else [val]:
            lines.append(f"{key}={value(v)}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


MODULE_SCENARIOS = ["allInOne", "rocmWorkers", "cpuWorker"]


@pytest.mark.parametrize("scenario", MODULE_SCENARIOS)
def test_module_units_verify_and_score_ok(scenario, module_eval, tmp_path):
    services = module_eval["scenarios"][scenario]["services"]
    assert services
    for name, unit in services.items():
        path = stage_unit(tmp_path, f"{name}.service", render_nixos_unit(unit))
        verify(path)
        level = exposure(path)
        assert level <= MAX_EXPOSURE, f"{scenario}/{name}: exposure {level}"
