"""The shim: HydraMesh's public edge (bare-JSON UDP ingress and an OpenAI-compatible HTTP API)."""
