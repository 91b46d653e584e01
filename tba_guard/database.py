"""The credential database (the `database` extra): its store, migrations, admin API, keys."""

from __future__ import annotations

from .stores import credential_store_for, needs_extra

with needs_extra("tba_guard.database"):
    from .stores.database import connect, migrate
    from .stores.database.admin import CredentialAdmin, NotFound
    from .stores.database.sealing import Sealer, SealError, new_key
    from .stores.database.store import DatabaseCredentials

__all__ = [
    "CredentialAdmin",
    "DatabaseCredentials",
    "NotFound",
    "SealError",
    "Sealer",
    "connect",
    "credential_store_for",
    "migrate",
    "new_key",
]
