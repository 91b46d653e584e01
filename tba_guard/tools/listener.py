"""A listening TCP socket whose connections answer without Nagle's 40 ms stall.

With several workers (`uvicorn --workers N`, `--reload`) uvicorn's supervisor binds the
listening socket itself with protocol number 0. asyncio turns `TCP_NODELAY` on only for sockets
that report `IPPROTO_TCP`, so each accepted connection keeps Nagle's algorithm: a response
written in two parts (headers, then body) waits for the client's delayed ACK, about 40 ms on
Linux, and a keep-alive client gets some 25 requests per second per connection.

`tcp_listener` binds the socket with `IPPROTO_TCP` and also sets `TCP_NODELAY` on the listener
itself, which Linux, the BSDs and macOS copy to every connection it accepts. So the fix holds
however a server re-wraps the file descriptor (uvicorn's `fd=` wraps it with protocol 0 too),
and it does no harm once uvicorn sets the option itself::

    import uvicorn
    from tba_guard.tools.listener import tcp_listener

    listener = tcp_listener("0.0.0.0", 8000)
    uvicorn.run("myapp:app", fd=listener.fileno(), workers=4)
"""

from __future__ import annotations

import socket

__all__ = ["DEFAULT_BACKLOG", "has_nodelay", "set_nodelay", "tcp_listener"]

DEFAULT_BACKLOG = 2048  # uvicorn's default: a burst of new connections waits, it is not refused


def tcp_listener(host: str, port: int, *, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A TCP socket bound to `host:port` and listening, ready for `uvicorn.run(fd=...)`.

    Like uvicorn's own: IPv6 when `host` contains a colon, `SO_REUSEADDR` so that a restart does
    not wait for old connections, inheritable so that worker processes can use it. Raises
    `OSError` when the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        set_nodelay(sock)
        sock.bind((host.strip("[]"), port))
        # Listening now, not when the first worker is up: a client that connects during the
        # workers' startup waits in the backlog instead of being refused.
        sock.listen(backlog)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def set_nodelay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on `sock`: on a listener (where the accepted connections
    inherit it) or on one connection. For sockets made elsewhere, such as systemd's."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def has_nodelay(sock: socket.socket) -> bool:
    """Whether `TCP_NODELAY` is on: what a check or a test of a deployment can ask."""
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
