"""tba_guard: NetSuite-style OAuth 1.0 (TBA) request validation for ASGI applications."""

from .checks import Guard, Identity, Step
from .credentials import CachedCredentials, CredentialStore, Integration, StaticCredentials, Token
from .errors import ErrorCode, TBAError
from .middleware import TBAGuardMiddleware, TBAUser
from .replay import MemoryReplayStore, ReplayKey, ReplayStore, ReplayStoreError
from .settings import GuardSettings, SettingsError
from .signature import signature_base_string, verify_signature

__all__ = [
    "CachedCredentials",
    "CredentialStore",
    "ErrorCode",
    "Guard",
    "GuardSettings",
    "Identity",
    "Integration",
    "MemoryReplayStore",
    "ReplayKey",
    "ReplayStore",
    "ReplayStoreError",
    "SettingsError",
    "StaticCredentials",
    "Step",
    "TBAError",
    "TBAGuardMiddleware",
    "TBAUser",
    "Token",
    "signature_base_string",
    "verify_signature",
]
