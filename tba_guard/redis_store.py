"""The Redis replay store (placeholder until issue 3 lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import GuardSettings


class RedisReplayStore:
    @classmethod
    def from_settings(cls, settings: GuardSettings) -> RedisReplayStore:
        raise NotImplementedError("the Redis replay store is not built yet")
