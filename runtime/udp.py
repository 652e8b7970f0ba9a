"""A DCF datagram endpoint on Trio that never blocks its receive loop.

Receiving drains the socket with non-blocking ``recvfrom`` calls and waits
for readability only when it is empty — several times the throughput of one
``await sock.recvfrom()`` per datagram (NOTES: ~147k/s against ~40k/s).
Sending tries ``sendto`` at once; if the kernel buffer is full the datagram
waits in a bounded backlog drained by a writer task, and past that it is
dropped and counted: UDP may lose it anyway, and every hop re-requests.
"""

from __future__ import annotations

import collections
import errno
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from hydramesh.common import wire
from hydramesh.common.auth import ReplayGuard
from hydramesh.common.errors import DecodeError
from hydramesh.common.wire import Datagram, MsgType, Sequencer

Address = tuple[Any, ...]
Handler = Callable[[Datagram, Address], None]
RawHandler = Callable[[bytes, Address], None]

MAX_RECEIVE = 65536
_YIELD_EVERY = 64
_SOCKET_BUFFER = 4 << 20


def wall_clock_us() -> int:
    """The header's timestamp: wall-clock microseconds (not Trio's clock,
    which is for scheduling and may be virtual in tests)."""
    return time.time_ns() // 1000


def open_udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            except OSError:  # pragma: no cover  (capped by net.core.*mem_max)
                pass
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@attrs.define(eq=False)
class DcfEndpoint:
    """One UDP socket speaking DCF: encodes with this sender's sequence
    counter and key, decodes strictly, counts what it drops by reason."""

    sock: socket.socket
    key: bytes | None = None
    backlog_limit: int = 4096
    clock_us: Callable[[], int] = wall_clock_us
    sequencer: Sequencer = attrs.Factory(Sequencer)
    replay_guard: ReplayGuard | None = None
    drops: collections.Counter[str] = attrs.Factory(collections.Counter)
    received: int = 0
    sent: int = 0
    _backlog: collections.deque[tuple[bytes, Address]] = attrs.Factory(collections.deque)
    _backlog_ready: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        if self.key is not None and self.replay_guard is None:
            self.replay_guard = ReplayGuard()

    @classmethod
    def bind(cls, host: str, port: int, **kwargs: Any) -> DcfEndpoint:
        return cls(open_udp_socket(host, port), **kwargs)

    @property
    def address(self) -> Address:
        return self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    # -- sending -------------------------------------------------------

    def send(self, msg_type: MsgType, payload: bytes, address: Address) -> bool:
        """Queue one datagram for ``address``; never blocks. False if dropped."""
        data = wire.encode(msg_type, self.sequencer(), self.clock_us(), payload, key=self.key)
        return self.send_raw(data, address)

    def send_raw(self, data: bytes, address: Address) -> bool:
        if self._backlog:
            return self._enqueue(data, address)
        try:
            self.sock.sendto(data, address)
        except BlockingIOError:
            return self._enqueue(data, address)
        except OSError as exc:
            self._count_send_error(exc)
            return False
        self.sent += 1
        return True

    def _enqueue(self, data: bytes, address: Address) -> bool:
        if len(self._backlog) >= self.backlog_limit:
            self.drops["send_backlog_full"] += 1
            return False
        self._backlog.append((data, address))
        self._backlog_ready.set()
        return True

    def _count_send_error(self, exc: OSError) -> None:
        # An unreachable peer or a too-large datagram loses this datagram
        # only; the protocol's re-requests cover it.
        name = errno.errorcode.get(exc.errno or 0, "oserror").lower()
        self.drops[f"send_{name}"] += 1

    async def _drain_backlog(self) -> None:
        while True:
            await self._backlog_ready.wait()
            while self._backlog:
                data, address = self._backlog[0]
                try:
                    self.sock.sendto(data, address)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.sock)
                    continue
                except OSError as exc:
                    self._count_send_error(exc)
                else:
                    self.sent += 1
                self._backlog.popleft()
            self._backlog_ready = trio.Event()

    # -- receiving -----------------------------------------------------

    def decode(self, data: bytes, address: Address) -> Datagram | None:
        """Decode one datagram or count why not; never raises."""
        try:
            datagram = wire.decode(data, key=self.key)
            if self.replay_guard is not None:
                self.replay_guard.check(address, datagram.header, self.clock_us())
        except DecodeError as exc:
            self.drops[exc.reason] += 1
            return None
        return datagram

    async def serve(self, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the receive loop (and the send-backlog writer) until cancelled.

        ``handler`` runs synchronously for each valid datagram: it must not
        block. A handler bug is logged by the caller's wrapper, not here.
        """

        def on_data(data: bytes, address: Address) -> None:
            datagram = self.decode(data, address)
            if datagram is not None:
                handler(datagram, address)

        await self.serve_raw(on_data, task_status=task_status)

    async def serve_raw(
        self, handler: RawHandler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The same loop without DCF framing: ``handler`` gets every datagram's
        bytes as they arrived. The shim's public ingress speaks bare payloads;
        pair it with :meth:`send_raw`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain_backlog)
            task_status.started()
            sock = self.sock
            while True:
                for _ in range(_YIELD_EVERY):
                    try:
                        data, address = sock.recvfrom(MAX_RECEIVE)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(sock)
                        break
                    except OSError as exc:
                        # e.g. ECONNREFUSED echoed back from an ICMP error:
                        # it concerns an earlier send, not this loop.
                        self._count_send_error(exc)
                        continue
                    self.received += 1
                    handler(data, address)
                else:
                    await trio.lowlevel.checkpoint()
