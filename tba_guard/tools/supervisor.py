"""Several uvicorn workers, each with a listening socket of its own: `tba-guard serve --workers N`.

uvicorn's own supervisor (`uvicorn.run(..., workers=N)`) hands every worker the same listening
socket. The workers race to accept, and a keep-alive connection stays with the worker that won
it, so under load most of a client's connections can end up on one worker while the others idle.
Here the parent binds one socket per worker on the same port with `SO_REUSEPORT`, and Linux
spreads new connections over them by a hash of their addresses. Where the kernel does not (see
`listener.reuse_port_balances`) the workers share one socket, as under uvicorn::

    from tba_guard.serving import run_workers

    raise SystemExit(run_workers("myapp:app", host="0.0.0.0", port=8000, workers=4))

The parent keeps every socket open, so the connections that arrive for a worker that died wait
in its socket's backlog for the replacement, which gets the same socket. SIGINT or SIGTERM stops
the workers gracefully (a second signal kills them). A worker that fails before it serves stops
them all, and the parent returns uvicorn's startup-failure status, 3.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from .listener import reuse_port_balances, tcp_listener

__all__ = ["STARTUP_FAILURE", "run_workers", "serve_worker", "supervise", "worker_listeners"]

STARTUP_FAILURE = 3  # uvicorn's exit status for a server that could not start
POLL_SECONDS = 0.5  # how soon a dead worker is noticed when no sentinel wakes the parent

logger = logging.getLogger("uvicorn.error")


def worker_listeners(host: str, port: int, workers: int) -> list[socket.socket]:
    """Listening sockets for `workers` processes: one each, with `SO_REUSEPORT`, where the kernel
    spreads connections over them; else one that they share. Raises `OSError` when the address
    cannot be bound, including when another server listens on the port."""
    if workers < 2 or not reuse_port_balances():
        return [tcp_listener(host, port)]
    # SO_REUSEPORT would also let these bind beside another server of the same user: a plain
    # bind first keeps a taken port an error, and picks the port when asked for port 0.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), port))
        port = probe.getsockname()[1]
    listeners: list[socket.socket] = []
    try:
        for _ in range(workers):
            listeners.append(tcp_listener(host, port, reuse_port=True))
    except OSError as exc:
        for listener in listeners:
            listener.close()
        if exc.errno != errno.ENOPROTOOPT:
            raise
        return [tcp_listener(host, port)]  # a kernel without SO_REUSEPORT (Linux before 3.9)
    return listeners


def run_workers(app: str, *, host: str, port: int, workers: int, **options: Any) -> int:
    """Serve `app` ("module:attribute", imported in each worker) from `workers` uvicorn processes
    on `host:port` until SIGINT or SIGTERM. `options` are `uvicorn.Config`'s (`factory`, `http`,
    `log_config`, ...). Returns 0 once stopped by a signal, `STARTUP_FAILURE` when a worker could
    not start; raises `OSError` when the address cannot be bound."""
    listeners = worker_listeners(host, port, workers)
    try:
        return supervise({**options, "app": app, "host": host, "port": port}, listeners, workers)
    finally:
        for listener in listeners:
            listener.close()


def supervise(options: dict[str, Any], listeners: list[socket.socket], workers: int) -> int:
    """Run `workers` processes of `uvicorn.Config(**options)`, worker i on listener i (all on the
    one listener when there is one), until a signal; see the module's docstring."""
    import uvicorn

    # The workers inherit WEB_CONCURRENCY, by which `TBAFlow` refuses per-process stores;
    # building a Config here also sets up the parent's logging and checks `options`.
    os.environ["WEB_CONCURRENCY"] = str(workers)
    options = {**options, "workers": workers}
    uvicorn.Config(**options)
    return _Supervisor(options, listeners, workers).run()


def serve_worker(options: dict[str, Any], listener: socket.socket) -> None:
    """One worker process: uvicorn serving on `listener`. Exits with `STARTUP_FAILURE` when it
    never served (the app would not import or its startup failed), unless told to stop."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(**options))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches every process of the terminal's group; the parent stops us anyway
    except SystemExit:
        if server.started:
            raise
    if not server.started and not server.should_exit:
        sys.exit(STARTUP_FAILURE)


class _Supervisor:
    def __init__(self, options: dict[str, Any], listeners: list[socket.socket], workers: int):
        self.options = options
        self.listeners = listeners
        self.workers = workers
        # spawn, as uvicorn does: a fork would copy the parent's threads and logging locks.
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.signals: list[int] = []
        self.stopping = False

    def run(self) -> int:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.on_signal) for sig in handled}
        try:
            own = len(self.listeners) > 1
            logger.info(
                "Started parent process [%d]: %d workers on http://%s:%d, %s",
                os.getpid(),
                self.workers,
                self.options["host"],
                self.listeners[0].getsockname()[1],
                "a listening socket each (SO_REUSEPORT)" if own else "sharing one listening socket",
            )
            for index in range(self.workers):
                self.processes.append(self.start(index))
            return self.watch()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            logger.info("Stopped parent process [%d]", os.getpid())

    def start(self, index: int) -> BaseProcess:
        listener = self.listeners[index % len(self.listeners)]
        process = self.context.Process(
            target=serve_worker, args=(self.options, listener), name=f"tba-guard worker {index}"
        )
        process.start()
        return process

    def watch(self) -> int:
        """Replace every worker that dies, until a signal or a worker that cannot start."""
        while not self.signals:
            wait([process.sentinel for process in self.processes], timeout=POLL_SECONDS)
            for index, process in enumerate(self.processes):
                if process.exitcode is None or self.signals:
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    logger.error("Worker [%s] could not start: stopping", process.pid)
                    return STARTUP_FAILURE
                logger.warning(
                    "Worker [%s] died (exit status %s): starting another",
                    process.pid,
                    process.exitcode,
                )
                self.processes[index] = self.start(index)
        logger.info("Received %s: stopping the workers", signal.Signals(self.signals[0]).name)
        return 0

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        if self.stopping:  # a second signal while the workers finish their requests
            for process in self.processes:
                if process.exitcode is None:
                    process.kill()

    def stop(self) -> None:
        """SIGTERM to every worker (uvicorn's graceful shutdown), then wait for all of them."""
        self.stopping = True
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
        for process in self.processes:
            process.join()
