"""uvicorn's command line, with the listening socket marked IPPROTO_TCP.

uvicorn --workers N binds the socket in the supervisor with proto 0; accepted
sockets inherit it, and asyncio only sets TCP_NODELAY when proto is
IPPROTO_TCP, so every keep-alive request past the first waits ~40 ms for a
delayed ACK (Kludex/uvicorn issue 3149, open). The peer should not lose to
that, so this wrapper re-wraps the bound socket before the workers get it.
    python3 peer_uvicorn.py [uvicorn arguments]
"""
import socket
import sys

import uvicorn
from uvicorn.config import Config

_bind_socket = Config.bind_socket


def bind_socket(self):
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


Config.bind_socket = bind_socket

if __name__ == "__main__":
    sys.exit(uvicorn.main())
