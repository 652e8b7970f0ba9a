"""Deployment checks: containers, compose, Kubernetes, systemd, Nix."""
