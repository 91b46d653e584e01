"""tba_guard: NetSuite-style OAuth 1.0 (TBA) request validation for ASGI applications."""

from .audit import AuditEvent
from .checks import Guard, Identity, Step
from .credentials import CachedCredentials, CredentialStore, Integration, StaticCredentials, Token
from .errors import ErrorCode, TBAError
from .flow import TBAFlow
from .middleware import TBAGuardMiddleware, TBAUser
from .replay import MemoryReplayStore, ReplayKey, ReplayStore, ReplayStoreError
from .settings import GuardSettings, SettingsError
from .signature import signature_base_string, verify_signature
from .tokens import MemoryTokenStore, TokenStore
from .users import User

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
    "ReplayKey",
    "ReplayStore",
    "ReplayStoreError",
    "SettingsError",
    "StaticCredentials",
    "Step",
    "TBAError",
    "TBAFlow",
    "TBAGuardMiddleware",
    "TBAUser",
    "Token",
    "TokenStore",
    "User",
    "signature_base_string",
    "verify_signature",
]
