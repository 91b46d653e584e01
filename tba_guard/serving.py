"""Serving a guarded app: the demo's uvicorn factory, workers with a socket each, the socket."""

from __future__ import annotations

from .tools.demo import DateHeader, create_app
from .tools.listener import tcp_listener
from .tools.supervisor import run_workers

__all__ = ["DateHeader", "create_app", "run_workers", "tcp_listener"]
