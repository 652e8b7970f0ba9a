"""A bare-JSON UDP client of the shim's ingress, written from PROTOCOL.md §6
alone (no HydraMesh client code), for tests."""

from __future__ import annotations

import json
import socket

import trio

from hydramesh.common.chunking import Image, Reassembly
from hydramesh.common.result import Chunk, Failure, decode_result


class RawClient:
    def __init__(self, sock, target):
        self.sock = sock
        self.target = target
        self.received: list = []

    @classmethod
    async def open(cls, target) -> RawClient:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        return cls(sock, target)

    def close(self) -> None:
        self.sock.close()

    async def send(self, body) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.sock.sendto(data, self.target)

    async def recv(self):
        data = await self.sock.recv(65536)
        message, payload = decode_result(data)
        self.received.append(message)
        return message, payload

    async def generate(self, body: dict, *, lose: frozenset[int] = frozenset(), quiet: float = 0.5) -> Image | Failure:
        """Send one request and collect its image, verifying the sha256.

        Chunks whose index is in ``lose`` are thrown away the first time they
        arrive, as if the network had lost them; they are then asked for
        again with ``resend``, as PROTOCOL.md §5 says."""
        await self.send(body)
        collected, lost = Reassembly(), set()
        while True:
            with trio.move_on_after(quiet) as waited:
                message, data = await self.recv()
            if waited.cancelled_caught:
                missing = collected.missing() if collected.info is not None else []
                await self.send({"op": "resend", "id": body["id"], "missing": missing} if missing else body)
                continue
            assert message.id == body["id"], f"got a result for {message.id!r} while waiting for {body['id']!r}"
            if isinstance(message, Failure):
                return message
            if isinstance(message, Chunk):
                if message.index in lose and message.index not in lost:
                    lost.add(message.index)
                    continue
                image = collected.add(message, data)  # raises if the sha256 does not match
                if image is not None:
                    return image
