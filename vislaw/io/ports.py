"""A free TCP port on this host: torch.distributed's MASTER_PORT, torchrun's rendezvous and
accelerate's main process port (training and evaluation both launch process groups)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (bound to port 0 on 127.0.0.1, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
