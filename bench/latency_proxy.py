"""A loopback TCP proxy that adds round-trip latency, as a VPC hop would (this kernel has no netem).

    python bench/latency_proxy.py --rtt-ms 1 LISTEN_PORT:TARGET_PORT [...]

Listens on 127.0.0.1 only and forwards to 127.0.0.1:TARGET_PORT. Every chunk from the server
is held back by the whole round-trip time before it reaches the client; client to server goes
at once. Chunks keep their order; nothing else is touched. asyncio protocols and timers, no
task per chunk, so the proxy itself stays cheap. (The event loop's timers wake with epoll's
millisecond granularity: the round trip the bench measures through it is what counts.)
It also counts the RPC calls clients send (ONC RPC record marking: one record, one call, one
round trip): on SIGUSR1 it prints `calls N`, the total so far over every listener.
Prints `ready` once every listener is up; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

LOOPBACK = "127.0.0.1"
CALLS = [0]  # RPC records clients sent, over every connection


class _Side(asyncio.Protocol):
    """One TCP connection of a proxied pair; forwards what it receives to its peer."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self._last_due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.delay == 0:
            self._deliver(data)
            return
        loop = asyncio.get_running_loop()
        due = max(loop.time() + self.delay, self._last_due + 1e-6)  # strictly ordered timers
        self._last_due = due
        loop.call_at(due, self._deliver, data)

    def _deliver(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        loop = asyncio.get_running_loop()
        peer = self.peer
        if peer is not None and peer.transport is not None:  # after what is still in flight
            loop.call_at(max(loop.time(), self._last_due) + 1e-6, peer.transport.close)


class _Client(_Side):
    """The accepted side: holds reading until the connection to the server is up, and counts
    the RPC records that pass (a 4-byte mark, last-fragment bit and length, then the bytes)."""

    def __init__(self, target: int, rtt: float) -> None:
        super().__init__(0.0)
        self._target, self._rtt = target, rtt
        self._mark = b""  # the part of a record mark read so far
        self._left = 0  # bytes of the current fragment still to come
        self._last = False

    def data_received(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view):
            if self._left == 0 and len(self._mark) < 4:
                take = 4 - len(self._mark)
                self._mark += bytes(view[at : at + take])
                at += take
                if len(self._mark) == 4:
                    mark = int.from_bytes(self._mark, "big")
                    self._last, self._left, self._mark = bool(mark >> 31), mark & 0x7FFFFFFF, b""
                    if self._left == 0 and self._last:
                        CALLS[0] += 1
                continue
            step = min(self._left, len(view) - at)
            self._left -= step
            at += step
            if self._left == 0 and self._last:
                CALLS[0] += 1
        super().data_received(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            _, server = await loop.create_connection(
                lambda: _Side(self._rtt), LOOPBACK, self._target
            )
        except OSError:
            self.transport.close()
            return
        self.peer, server.peer = server, self
        self.transport.resume_reading()


async def run(pairs: list[tuple[int, int]], rtt_ms: float) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda t=target: _Client(t, rtt_ms / 1000), LOOPBACK, listen)
        for listen, target in pairs
    ]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"calls {CALLS[0]}", flush=True))
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, default=1.0)
    parser.add_argument("pairs", nargs="+", metavar="LISTEN:TARGET")
    args = parser.parse_args()
    pairs = [(int(a), int(b)) for a, b in (pair.split(":") for pair in args.pairs)]
    asyncio.run(run(pairs, args.rtt_ms))


if __name__ == "__main__":
    main()
