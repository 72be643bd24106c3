"""Loopback ports for the servers the drill starts (etcd, the API server, Postgres, Docker's published ports).

Every server the drill starts listens on 127.0.0.1 only (DESIGN, "Loopback only");
the cluster targets and the TaskDB providers both need free ports and neither should
depend on the other for it.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
