"""Fixtures of the deployment checks; the helpers are in deploy_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .deploy_helpers import NIX_DIR, REPO, nix_eval_expr_json, nix_eval_json, nixpkgs_lib_path


@pytest.fixture(scope="session")
def nixpkgs_lib() -> Path:
    path = nixpkgs_lib_path()
    if path is None:
        pytest.skip(
            "NIXPKGS_LIB_PATH is not set to a nixpkgs lib snapshot (a checkout of "
            "nix-community/nixpkgs.lib, or of nixpkgs): evaluating the NixOS module and the "
            "flake needs nixpkgs' lib, which is not vendored and cannot be fetched in CI"
        )
    return path


@pytest.fixture(scope="session")
def module_eval(nixpkgs_lib: Path) -> dict:
    """Every scenario of tests/deploy/nix/scenarios.nix through modules/hydramesh.nix."""
    return nix_eval_json(NIX_DIR / "eval-module.nix", libPath=str(nixpkgs_lib), repo=str(REPO))


@pytest.fixture(scope="session")
def flake_eval(nixpkgs_lib: Path) -> dict:
    return nix_eval_json(NIX_DIR / "flake-outputs.nix", libPath=str(nixpkgs_lib), repo=str(REPO))


@pytest.fixture(scope="session")
def hardening() -> dict:
    """modules/hardening.nix (pure Nix, needs no nixpkgs)."""
    return nix_eval_expr_json(
        "let h = import ./modules/hardening.nix; in "
        '{ inherit (h) head shim; worker = { nvidia = h.worker "nvidia"; '
        'rocm = h.worker "rocm"; cpu = h.worker "cpu"; any = h.worker "any"; }; }'
    )
