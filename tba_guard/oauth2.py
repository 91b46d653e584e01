"""OAuth 2.0 beside TBA (the `oauth2` extra): the token endpoint to mount beside a plain
middleware, the records of mappings and brownouts, and the lookups a store of one's own
implements to serve OAuth 2.0 clients."""

from __future__ import annotations

from .core.protocols import ClientStore
from .core.records import Brownout, Certificate
from .stores import needs_extra

with needs_extra("tba_guard.oauth2"):
    from .asgi.token_endpoint import OAuth2TokenEndpoint

__all__ = ["Brownout", "Certificate", "ClientStore", "OAuth2TokenEndpoint"]
