"""Real processes on loopback with the embedded tiny diffusers model."""

from __future__ import annotations

import pytest

from hydramesh.client.local_cluster import ClusterSpec, LocalCluster, free_port


@pytest.fixture
def cluster_spec(models_dir, tmp_path):
    def make(**overrides):
        values = dict(
            workers=2,
            backend="diffusers",
            models_dir=models_dir,
            head_port=free_port(),
            http_port=free_port(),
            log_level="info",
        )
        values.update(overrides)
        return ClusterSpec(**values)

    return make


@pytest.fixture
def cluster_log(tmp_path):
    return tmp_path / "cluster.log"


def start(nursery, spec, log_file):
    return nursery.start(LocalCluster(spec, log_file=log_file).run)
