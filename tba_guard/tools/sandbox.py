"""`tba-guard sandbox`: a NetSuite-like account for a client library's CI, and the process
behind the `netsuite_sandbox` fixture (tba_guard/sandbox.py).

The demo service with both surfaces (RESTlets, REST web services) under throw-away
credentials, made afresh at each start, with concurrency governance on at a developer
account's limit of 5, so a client's retry on `SSS_REQUEST_LIMIT_EXCEEDED` or 429 can be tested
too. The credentials are the only output: JSON on stdout, or a file only its owner may read.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.records import Integration, Token
from ..core.settings import GuardSettings
from .demo import HEALTH_PATH

#: A sandbox account's ID, as NetSuite spells a first sandbox of account 1234567.
SANDBOX_ACCOUNT = "1234567_SB1"
#: A NetSuite developer account's concurrency limit.
DEVELOPER_ACCOUNT_LIMIT = 5


@dataclass(frozen=True)
class SandboxAccount:
    """What a client needs to sign requests to a running sandbox; JSON as `as_json` writes."""

    base_url: str
    account: str
    consumer_key: str
    consumer_secret: str = field(repr=False)
    token_id: str
    token_secret: str = field(repr=False)
    governance_limit: int = DEVELOPER_ACCOUNT_LIMIT

    @property
    def restlet_url(self) -> str:
        return f"{self.base_url}/app/site/hosting/restlet.nl"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/services/rest"

    def as_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SandboxAccount:
        return cls(**json.loads(text))


def new_account(
    base_url: str,
    *,
    account: str = SANDBOX_ACCOUNT,
    governance_limit: int = DEVELOPER_ACCOUNT_LIMIT,
) -> SandboxAccount:
    """Fresh credentials: 64 hex digits each, as NetSuite issues them."""
    return SandboxAccount(
        base_url=base_url,
        account=account,
        consumer_key=secrets.token_hex(32),
        consumer_secret=secrets.token_hex(32),
        token_id=secrets.token_hex(32),
        token_secret=secrets.token_hex(32),
        governance_limit=governance_limit,
    )


def sandbox_settings(sandbox: SandboxAccount, *, redis_url: str | None = None) -> GuardSettings:
    """The guard of a sandbox: its one integration and token, the account as realm, and
    governance at the account's limit (counted in Redis when one is given)."""
    stores: dict[str, Any] = {}
    if redis_url is not None:
        prefix = f"tba_guard:sandbox:{sandbox.consumer_key[:12]}:"
        stores = {
            "replay_store": redis_url,
            "replay_store_key_prefix": prefix + "nonce:",
            "governance_store": redis_url,
            "governance_key_prefix": prefix + "governance:",
        }
    integration = Integration(sandbox.consumer_key, sandbox.consumer_secret, name="Sandbox")
    # Entity -5 and role 3: an account's first administrator, as in a fresh NetSuite account.
    token = Token(
        sandbox.token_id, sandbox.token_secret, sandbox.consumer_key, entity="-5", role="3"
    )
    return GuardSettings(
        realm=sandbox.account,
        integrations=(integration,),
        tokens=(token,),
        governance_limit=sandbox.governance_limit,
        exempt_paths=(HEALTH_PATH,),
        **stores,
    )


def write_private(path: str, text: str) -> None:
    """Write `text` to a file only its owner may read, created so from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
