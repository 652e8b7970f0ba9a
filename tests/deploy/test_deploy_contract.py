"""The deployments' command-line contract must be what the programs accept."""

import pytest

from hydramesh.common.config import fields_of
from hydramesh.head.config import HeadConfig
from hydramesh.shim.config import ShimConfig
from hydramesh.worker.config import WorkerConfig

from .deploy_helpers import CONTRACT_ENV, CONTRACT_FLAGS

CONFIGS = {"hydramesh-head": HeadConfig, "hydramesh-worker": WorkerConfig, "hydramesh-shim": ShimConfig}
# Read by the Hugging Face libraries or the worker's token lookup, not flags.
HUB_ENV = {"HF_TOKEN", "HF_TOKEN_FILE", "HF_HOME"}


@pytest.mark.parametrize("program", sorted(CONFIGS))
def test_contract_flags_and_environment_exist(program):
    options = [opt for _, opt in fields_of(CONFIGS[program])]
    flags = {opt.flag for opt in options} | {f"--no-{opt.flag[2:]}" for opt in options}
    envs = {opt.env for opt in options if opt.env}
    assert CONTRACT_FLAGS[program] <= flags, CONTRACT_FLAGS[program] - flags
    assert CONTRACT_ENV[program] - HUB_ENV <= envs, CONTRACT_ENV[program] - HUB_ENV - envs
