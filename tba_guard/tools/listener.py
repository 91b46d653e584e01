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

Workers that share one listener race to accept, and a long-lived keep-alive connection stays
with whichever won: under load most of them can end up on one worker. `tcp_listener(...,
reuse_port=True)` gives each worker a socket of its own on the same port, which the kernel
fills evenly; `tba_guard.tools.supervisor` runs uvicorn workers that way.
"""

from __future__ import annotations

import errno
import socket
import sys

__all__ = [
    "DEFAULT_BACKLOG",
    "has_nodelay",
    "has_reuse_port",
    "reuse_port_balances",
    "set_nodelay",
    "tcp_listener",
]

DEFAULT_BACKLOG = 2048  # uvicorn's default: a burst of new connections waits, it is not refused


def tcp_listener(
    host: str, port: int, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False
) -> socket.socket:
    """A TCP socket bound to `host:port` and listening, ready for `uvicorn.run(fd=...)`.

    Like uvicorn's own: IPv6 when `host` contains a colon, `SO_REUSEADDR` so that a restart does
    not wait for old connections, inheritable so that worker processes can use it. With
    `reuse_port`, `SO_REUSEPORT` too: several such sockets (of the same user) can listen on one
    port, and Linux spreads new connections over them (see `reuse_port_balances`). Raises
    `OSError` when the address cannot be bound (in use, not local, no permission) or the
    system has no `SO_REUSEPORT`.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            option = getattr(socket, "SO_REUSEPORT", None)
            if option is None:
                raise OSError(errno.ENOPROTOOPT, "SO_REUSEPORT is not available here")
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
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


def has_reuse_port(sock: socket.socket) -> bool:
    """Whether `SO_REUSEPORT` is on (False where the system has no such option)."""
    option = getattr(socket, "SO_REUSEPORT", None)
    return option is not None and bool(sock.getsockopt(socket.SOL_SOCKET, option))


def reuse_port_balances() -> bool:
    """Whether the kernel spreads new connections over sockets that share a port through
    `SO_REUSEPORT`: Linux does, by a hash of each connection's addresses. Others are not relied
    on (macOS accepts the option without spreading connections; FreeBSD spreads them only with
    its own `SO_REUSEPORT_LB`), so workers there share one socket."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
