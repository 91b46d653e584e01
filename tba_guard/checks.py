"""Each check on its own, their order (`SEQUENCE`) and the codes they raise (`CATALOG`)."""

from __future__ import annotations

from .core.checks import (
    Step,
    check_authorization_flow,
    check_entity_and_role,
    check_feature_enabled,
    check_integration_enabled,
    check_integration_known,
    check_nonce_length,
    check_nonce_unused,
    check_required_parameters,
    check_signature,
    check_signature_method,
    check_timestamp,
    check_token,
    check_version,
    claim_nonce,
    replay_key,
)
from .core.errors import CATALOG
from .core.sequence import SEQUENCE
from .core.settings import MIN_SECRET_LENGTH

__all__ = [
    "CATALOG",
    "MIN_SECRET_LENGTH",
    "SEQUENCE",
    "Step",
    "check_authorization_flow",
    "check_entity_and_role",
    "check_feature_enabled",
    "check_integration_enabled",
    "check_integration_known",
    "check_nonce_length",
    "check_nonce_unused",
    "check_required_parameters",
    "check_signature",
    "check_signature_method",
    "check_timestamp",
    "check_token",
    "check_version",
    "claim_nonce",
    "replay_key",
]
