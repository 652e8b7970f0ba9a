"""containers/kubernetes: the base and each overlay build with kustomize
(kubectl kustomize), validate strictly against the Kubernetes OpenAPI schemas
shipped in kubernetes-validate (oldest and newest supported versions), and say
what the deployment needs: Services with the UDP and HTTP ports, probes on
/healthz, the cluster key from a Secret file, resource limits, GPUs in the
overlays, a hardened pod spec."""

from __future__ import annotations

import functools

import pytest

from .deploy_helpers import (
    CONTRACT_ENV,
    CONTRACT_FLAGS,
    REPO,
    RUNTIME_ENV,
    flags_of,
    require_tool,
    run,
    yaml_documents,
)

KUSTOMIZE = REPO / "containers" / "kubernetes"
TARGETS = ["base", "overlays/nvidia", "overlays/rocm"]
# The oldest Kubernetes the manifests promise (MixedProtocolLBService is GA from
# 1.26) and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.28.0", "1.37.0"]
HTTP_PORT = {"head": 7780, "shim": 8080, "worker": 7790}
PROGRAM = {"head": "hydramesh-head", "shim": "hydramesh-shim", "worker": "hydramesh-worker"}


@functools.cache
def build(target: str) -> str:
    kubectl = require_tool("kubectl")
    return run([kubectl, "kustomize", str(KUSTOMIZE / target)]).stdout


@functools.cache
def _objects(target: str) -> tuple:
    return tuple(yaml_documents(build(target)))


def objects(target: str) -> list[dict]:
    return list(_objects(target))


def by_kind(target: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects(target) if o["kind"] == kind}


def component(name: str) -> str:
    return name.removeprefix("hydramesh-")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_validates_against_schemas(target, version, tmp_path):
    validate = require_tool("kubernetes-validate")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(build(target))
    proc = run([validate, "--strict", "--quiet", "-k", version, str(manifest)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_mistakes(tmp_path):
    """The validator really rejects what the API server would."""
    validate = require_tool("kubernetes-validate")
    text = build("base").replace("containerPort: 7780", "containerPort: seven-seven-eight-o", 1)
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    proc = run(
        [validate, "--strict", "--quiet", "-k", K8S_VERSIONS[-1], str(manifest)], check=False
    )
    assert proc.returncode != 0


@pytest.mark.parametrize("target", TARGETS)
def test_workloads_and_services(target):
    deployments = by_kind(target, "Deployment")
    assert set(deployments) == {"hydramesh-head", "hydramesh-shim", "hydramesh-worker"}
    assert all(
        o["metadata"]["namespace"] == "hydramesh"
        for o in objects(target)
        if o["kind"] != "Namespace"
    )
    services = by_kind(target, "Service")
    assert set(services) == {"hydramesh-head", "hydramesh-shim"}

    def ports(svc):
        return {(p["protocol"], p["port"]) for p in svc["spec"]["ports"]}

    assert ports(services["hydramesh-head"]) == {("UDP", 7777), ("TCP", 7780)}
    assert ports(services["hydramesh-shim"]) == {("UDP", 9999), ("TCP", 8080)}
    shim = services["hydramesh-shim"]["spec"]
    # client addresses reach the shim's rate limits and allow-list
    assert shim["type"] == "LoadBalancer" and shim["externalTrafficPolicy"] == "Local"
    assert shim["sessionAffinity"] == "ClientIP"
    for name, svc in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items(), name

    head = deployments["hydramesh-head"]["spec"]
    assert head["replicas"] == 1 and head["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_hardened_and_bounded(target):
    for name, dep in by_kind(target, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["terminationGracePeriodSeconds"] >= 35, f"{name}: drain needs ~30 s"
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert "hostNetwork" not in pod and "hostPID" not in pod, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "privileged" not in sc, name
            limits = c["resources"]["limits"]
            assert {"cpu", "memory"} <= set(limits), f"{name}: limits {limits}"
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            # writable only where mounted: /tmp at least
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, name


@pytest.mark.parametrize("target", TARGETS)
def test_probes_on_healthz(target):
    for name, dep in by_kind(target, "Deployment").items():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] == "/healthz", f"{name} {probe}"
            port = port_names.get(get["port"], get["port"])
            assert port == HTTP_PORT[component(name)], f"{name} {probe}"
    worker = by_kind(target, "Deployment")["hydramesh-worker"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    startup = worker["startupProbe"]
    # model loading may take minutes before /healthz answers
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("target", TARGETS)
def test_cluster_key_is_a_secret_file(target):
    assert not by_kind(target, "Secret"), "no secret values in the manifests"
    for name, dep in by_kind(target, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["cluster-key"]["secret"]["secretName"] == "hydramesh-cluster-key", name
        assert "optional" not in volumes["cluster-key"]["secret"], f"{name}: the key is required"
        (c,) = pod["containers"]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "cluster-key")
        assert mount["readOnly"] is True
        env = {e["name"]: e for e in c["env"]}
        key_file = env["HYDRAMESH_CLUSTER_KEY_FILE"]["value"]
        assert key_file == f"{mount['mountPath']}/cluster-key", name


@pytest.mark.parametrize("target", TARGETS)
def test_configuration_within_the_contract(target):
    for name, dep in by_kind(target, "Deployment").items():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        program = PROGRAM[component(name)]
        env = {e["name"] for e in c["env"]}
        assert not env - CONTRACT_ENV[program] - RUNTIME_ENV, (
            f"{name}: {env - CONTRACT_ENV[program] - RUNTIME_ENV}"
        )
        assert not set(flags_of(c.get("args", []))) - CONTRACT_FLAGS[program], name
        assert "command" not in c, f"{name}: keep the image's entrypoint"


@pytest.mark.parametrize("target", TARGETS)
def test_images(target):
    expected = {
        "hydramesh-head": "hydramesh/head",
        "hydramesh-shim": "hydramesh/shim",
        "hydramesh-worker": "hydramesh/worker-rocm"
        if target.endswith("rocm")
        else "hydramesh/worker-nvidia",
    }
    for name, dep in by_kind(target, "Deployment").items():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        image, _, tag = c["image"].partition(":")
        assert image == expected[name], f"{name}: {c['image']}"
        assert tag and tag != "latest", f"{name}: untagged image {c['image']}"


def worker_container(target):
    return by_kind(target, "Deployment")["hydramesh-worker"]["spec"]["template"]["spec"][
        "containers"
    ][0]


def test_worker_finds_the_head_through_its_service():
    for target in TARGETS:
        env = {e["name"]: e.get("value") for e in worker_container(target)["env"]}
        assert env["WORKER_HEAD_IP"] == "hydramesh-head" and env["WORKER_HEAD_PORT"] == "7777"
        shim_env = {
            e["name"]: e.get("value")
            for e in by_kind(target, "Deployment")["hydramesh-shim"]["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        }
        assert shim_env["SHIM_NODE_TARGET"] == "hydramesh-head:7777"


def test_hf_token_is_optional_and_from_a_secret():
    env = {e["name"]: e for e in worker_container("base")["env"]}
    ref = env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "hydramesh-hf-token" and ref["optional"] is True


def test_base_worker_runs_on_cpu():
    c = worker_container("base")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["WORKER_DEVICE"] == "cpu"
    assert not any("gpu" in k for k in c["resources"]["limits"])


@pytest.mark.parametrize(
    ("target", "resource", "device", "toleration"),
    [
        ("overlays/nvidia", "nvidia.com/gpu", "cuda", "nvidia.com/gpu"),
        ("overlays/rocm", "amd.com/gpu", "rocm", "amd.com/gpu"),
    ],
)
def test_gpu_overlays(target, resource, device, toleration):
    dep = by_kind(target, "Deployment")["hydramesh-worker"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"][resource] == 1
    assert c["resources"]["requests"][resource] == 1
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["WORKER_DEVICE"] == device
    tolerations = dep["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == toleration for t in tolerations)
    # only the worker gets GPUs
    for name, other in by_kind(target, "Deployment").items():
        if name != "hydramesh-worker":
            limits = other["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert resource not in limits, name
