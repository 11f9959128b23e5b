"""Loopback ports for servers the tests start: free, distinct, and safe to restart on.

Ports come from below the kernel's ephemeral range. A port from that range can be taken
as the local end of any outgoing connection (the suite makes thousands) while a stopped or
killed server is down, and restarting the server on the same port then fails.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1 that this process has not handed out before."""
    low = _ephemeral_low()
    for _ in range(500):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _handed_out:
            continue
        if _bindable(port, socket.SOCK_STREAM) and _bindable(port, socket.SOCK_DGRAM):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
