"""Encoding a PIL image into the requested file format."""

from __future__ import annotations

import io

from PIL import Image

PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}


def encode_image(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG")
    elif fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=92)
    else:
        image.save(buffer, format=PIL_FORMATS[fmt], quality=92)
    return buffer.getvalue()
