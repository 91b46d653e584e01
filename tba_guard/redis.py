"""The Redis replay and token stores (the `redis` extra), shared by every worker and host."""

from __future__ import annotations

from .stores import needs_extra

with needs_extra("tba_guard.redis"):
    from .stores.redis_replay import RedisReplayStore
    from .stores.redis_tokens import RedisTokenStore

__all__ = ["RedisReplayStore", "RedisTokenStore"]
