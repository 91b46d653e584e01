"""The credential database: integrations and access tokens in SQLite or PostgreSQL.

`credential_store = "sqlite:///path/tba.db"` or `"postgresql://…"` selects it (needs
`tba-guard[database]`); `tba-guard db upgrade` creates or migrates the tables. See
docs/credential-database.md.
"""

from __future__ import annotations

from .connect import is_database_url
from .store import DatabaseCredentials, DatabaseUnavailable

__all__ = ["DatabaseCredentials", "DatabaseUnavailable", "is_database_url"]
