"""Inference backends: ``diffusers`` (real pipelines) and ``null`` (no ML)."""
