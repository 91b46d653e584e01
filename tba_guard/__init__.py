"""tba_guard: NetSuite-style OAuth 1.0 (TBA) request validation for ASGI applications."""

from ._compiled import restore_class_docstrings
from .asgi.answers import OnError
from .asgi.flow import TBAFlow
from .asgi.middleware import TBAGuardMiddleware, TBAUser
from .asgi.routes import RequireTBA, TBARejection, tba_rejection_handler
from .core.audit import AuditEvent
from .core.checks import Step
from .core.errors import ErrorCode, TBAError
from .core.protocols import CredentialStore, ReplayKey, ReplayStore, ReplayStoreError, TokenStore
from .core.records import Identity, Integration, Token, User
from .core.request import OAuthRequest
from .core.settings import GuardSettings, SettingsError
from .core.standalone import signature_base_string, verify_signature
from .guard import Guard
from .stores.memory import CachedCredentials, MemoryReplayStore, MemoryTokenStore, StaticCredentials

__all__ = [
    "AuditEvent",
    "CachedCredentials",
    "CredentialStore",
    "ErrorCode",
    "Guard",
    "GuardSettings",
    "Identity",
    "Integration",
    "MemoryReplayStore",
    "MemoryTokenStore",
    "OAuthRequest",
    "OnError",
    "ReplayKey",
    "ReplayStore",
    "ReplayStoreError",
    "RequireTBA",
    "SettingsError",
    "StaticCredentials",
    "Step",
    "TBAError",
    "TBAFlow",
    "TBAGuardMiddleware",
    "TBARejection",
    "TBAUser",
    "Token",
    "TokenStore",
    "User",
    "signature_base_string",
    "tba_rejection_handler",
    "verify_signature",
]

# mypyc keeps no class docstrings: give the compiled build's public classes theirs back.
restore_class_docstrings(
    *(value for value in map(globals().get, __all__) if isinstance(value, type))
)
