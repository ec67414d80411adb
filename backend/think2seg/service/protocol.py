"""uvicorn's h11 protocol with what a hostile client needs: a header timeout and a close that cuts.

- A connection that has not sent a whole request head within `header_timeout` seconds is closed, token or
  not (uvicorn has no such timeout: 16 sockets sending half a header stayed open for good).
- When uvicorn closes a connection after an answer sent before the body was read (our 413 says
  `Connection: close`), the close is a lingering one: the answer is flushed and the write side shut, what
  the client still sends is read and dropped up to `LINGER_BYTES` or `LINGER_S`, then the socket closes
  (and the kernel resets whatever comes after). A plain close would reset the connection at once, and the
  client could lose the 413 it had not read yet; no close at all (uvicorn's default for an answer without
  `Connection: close`) drains the whole body, however large.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LINGER_BYTES = 1 << 20
LINGER_S = 2.0


class LingeringTransport:
    """The transport uvicorn sees: `close()` flushes, shuts the write side and lingers (see above)."""

    def __init__(self, transport: asyncio.Transport, protocol: CuttingH11Protocol):
        self._transport, self._protocol = transport, protocol
        self._closing = False

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._protocol.lingering = True
        t = self._transport
        try:
            if t.is_closing() or not t.can_write_eof():
                t.close()
                return
            t.write_eof()  # after the buffered answer: the client reads the 413, then EOF
            t.resume_reading()
        except (OSError, RuntimeError):
            t.close()
            return
        asyncio.get_running_loop().call_later(LINGER_S, t.close)

    def cut(self) -> None:
        self._closing = True
        self._transport.close()


class CuttingH11Protocol(H11Protocol):
    header_timeout: float = 20.0

    def connection_made(self, transport) -> None:
        self.lingering = False
        self._lingered = 0
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(LingeringTransport(transport, self))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self.transport.cut()
            return
        super().data_received(data)
        self._arm_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        """Waiting for a request head: a timer runs (from the first byte, or from the connection's start)."""
        waiting = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if not waiting:
            self._cancel_header_timer()
        elif self._header_timer is None and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            self.transport.cut()


def protocol_with(header_timeout: float) -> type[CuttingH11Protocol]:
    return type("CuttingH11Protocol", (CuttingH11Protocol,), {"header_timeout": header_timeout})
