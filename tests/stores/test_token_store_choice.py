"""Which token store the settings build for the flow, with a credential database: request
tokens where `token_store` says (here Redis), access tokens in the database."""

from __future__ import annotations

from pathlib import Path

from tba_guard.core.records import Token
from tba_guard.core.settings import GuardSettings
from tba_guard.stores import credential_store_for, token_store_for
from tba_guard.stores.database.tokens import RedisRequestTokens
from tba_guard.stores.redis_tokens import RedisTokenStore

from .database_support import database_url, fresh_key, prepared


async def test_with_a_credential_store_access_tokens_leave_redis_for_it(
    redis_prefix: str, tmp_path: Path
) -> None:
    key = fresh_key()
    with database_url("sqlite", tmp_path) as url:
        admin = prepared(url, key)
        integration = admin.add_integration("Flow app", authorization_flow=True)
        settings = GuardSettings(
            credential_store=url,
            credential_key=(key,),
            token_store="redis://127.0.0.1:6379/0",
            token_store_key_prefix=redis_prefix,
        )
        tokens = token_store_for(settings)
        credentials = credential_store_for(settings)
        try:
            assert isinstance(tokens, RedisRequestTokens)
            assert isinstance(tokens, RedisTokenStore)  # request tokens stay on Redis
            issued = Token("tk-" + "a" * 40, "ts-" + "b" * 40, integration.consumer_key, "38", "3")
            await tokens.put_access_token(issued)
            assert await tokens.access_token(issued.token_id) == issued
            assert {info.token_id: info.issued_by for info in admin.tokens()} == {
                issued.token_id: "flow"
            }
        finally:
            await tokens.aclose()
            credentials.close()  # type: ignore[attr-defined]
            admin.engine.dispose()
