"""Splitting an encoded image into RESULT datagrams, and putting it back.

Chunks are sized so that every whole datagram — header, meta, data and the
optional tag — fits ``max_datagram`` (1400 bytes by default: under a 1500-byte
MTU with room for IP and UDP headers, so nothing is ever IP-fragmented).
"""

from __future__ import annotations

import hashlib
import attrs

from .result import META_LEN, Chunk, ImageInfo, encode_result
from .wire import HEADER_SIZE, TAG_SIZE

DEFAULT_MAX_DATAGRAM = 1400


@attrs.frozen
class Image:
    """A whole encoded image and the facts every chunk carries."""

    info: ImageInfo
    data: bytes

    @classmethod
    def build(cls, request_id: str, data: bytes, *, mime: str, **facts) -> Image:
        info = ImageInfo(request_id, len(data), hashlib.sha256(data).hexdigest(), mime, **facts)
        return cls(info, data)


def _overhead(info: ImageInfo, count: int, keyed: bool) -> int:
    # The meta is longest for the highest index, so size every chunk for it.
    meta = encode_result(Chunk(info, max(count - 1, 0), count))
    return HEADER_SIZE + len(meta) + (TAG_SIZE if keyed else 0)


def chunk_size(info: ImageInfo, *, max_datagram: int = DEFAULT_MAX_DATAGRAM, keyed: bool = False) -> tuple[int, int]:
    """Return ``(data bytes per chunk, chunk count)`` for this image."""
    count = 1
    # The count changes the meta's length, which changes the count: iterate
    # to the fixed point (two or three rounds; digits grow slowly).
    for _ in range(8):
        room = max_datagram - _overhead(info, count, keyed)
        if room <= 0:
            raise ValueError(f"max_datagram {max_datagram} leaves no room for data after the meta")
        needed = max(1, -(-info.size // room))
        if needed == count:
            return room, count
        count = needed
    raise AssertionError("chunk count did not settle")  # pragma: no cover


def split(image: Image, *, max_datagram: int = DEFAULT_MAX_DATAGRAM, keyed: bool = False) -> list[bytes]:
    """All RESULT payloads of an image, in chunk order."""
    room, count = chunk_size(image.info, max_datagram=max_datagram, keyed=keyed)
    data = image.data
    return [encode_result(Chunk(image.info, i, count), data[i * room : (i + 1) * room]) for i in range(count)]


@attrs.define(eq=False)
class Reassembly:
    """Collects the chunks of one image; verifies the whole on completion.

    A chunk of a *different* image for the same id (a re-dispatched task
    rendered elsewhere) restarts the collection: mixing them would corrupt
    both, and the newest attempt is the one still being sent.
    """

    info: ImageInfo | None = None
    count: int = 0
    parts: dict[int, bytes] = attrs.Factory(dict)
    restarts: int = 0

    def add(self, chunk: Chunk, data: bytes) -> Image | None:
        """Add one chunk; return the image once whole and verified.

        Raises ``ValueError`` if the complete bytes do not match the sha256,
        after which the collection starts over.
        """
        if self.info is None or (chunk.info.sha256, chunk.info.size, chunk.count) != (
            self.info.sha256,
            self.info.size,
            self.count,
        ):
            if self.info is not None:
                self.restarts += 1
            self.info, self.count, self.parts = chunk.info, chunk.count, {}
        self.parts.setdefault(chunk.index, data)
        if len(self.parts) < self.count:
            return None
        whole = b"".join(self.parts[i] for i in range(self.count))
        info = self.info
        if len(whole) != info.size or hashlib.sha256(whole).hexdigest() != info.sha256:
            self.info, self.count, self.parts = None, 0, {}
            raise ValueError(f"reassembled {len(whole)} bytes do not match size {info.size} / sha256 {info.sha256[:12]}…")
        return Image(info, whole)

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.parts]
