"""The audit trail: one structured record per decision, like NetSuite's Login Audit Trail
(NetSuite rule N28, docs/netsuite-behaviour.md).

Records go to the stdlib logger `tba_guard.audit` (fields under `record.tba_audit`) and to any
hook the application registers (metrics). They carry identifiers only: never a secret, a
signature, a nonce or a header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

logger = logging.getLogger("tba_guard.audit")
# logging's own answers to `isEnabledFor`, per level: it clears this dict (never replaces it)
# whenever a level or `logging.disable` changes, so reading it is always current.
_ENABLED_FOR: dict[int, bool] = getattr(logger, "_cache", {})
# A library does not print on its own: records reach whatever handlers the application set up.
logging.getLogger("tba_guard").addHandler(logging.NullHandler())

_MAX_FIELD = 128  # client-chosen identifiers are cut so a log line stays a line


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decision of the guard, as the audit log records it: who asked, for what, and the
    verdict. Identifiers only, never a secret or a signature."""

    outcome: Literal["accepted", "rejected"]
    code: str  # the catalog code, or "" when accepted
    consumer_key: str
    token_id: str
    realm: str
    method: str
    path: str
    client: str
    time: float
    reason: str = ""
    scheme: str = "tba"  # or "oauth2": a bearer token, or the token endpoint's grant
    # Why a rejection happened and what to do, for operators (docs/troubleshooting.md): the
    # diagnosis's words, never a secret; empty when accepted or when nothing more is known.
    detail: str = ""


AuditHook = Callable[[AuditEvent], None]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _safe(value: str) -> str:
    """No control characters (a decoded `%0A` in a consumer key would otherwise forge a second
    audit line) and no lone surrogates (a log handler writing UTF-8 would fail on them)."""
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape, value)


def _clip(value: str) -> str:
    value = _safe(value)
    return value if len(value) <= _MAX_FIELD else value[:_MAX_FIELD] + "…"


def logs_at(level: int) -> bool:
    """`logger.isEnabledFor(level)` without its Python frame, once logging has cached it."""
    cached = None if logger.disabled else _ENABLED_FOR.get(level)
    return logger.isEnabledFor(level) if cached is None else cached


def is_heard(outcome: str, hooks: tuple[AuditHook, ...]) -> bool:
    """Whether a decision would reach anyone: skip building the record when it would not."""
    level = logging.INFO if outcome == "accepted" else logging.WARNING
    return bool(hooks) or logs_at(level)


def record(event: AuditEvent, hooks: tuple[AuditHook, ...] = ()) -> None:
    event = AuditEvent(
        event.outcome,
        event.code,
        _clip(event.consumer_key),
        _clip(event.token_id),
        _clip(event.realm),
        _clip(event.method),
        _clip(event.path),
        _clip(event.client),
        event.time,
        _safe(event.reason),
        event.scheme,
        _safe(event.detail),
    )
    level = logging.INFO if event.outcome == "accepted" else logging.WARNING
    if logs_at(level):
        logger.log(
            level,
            "%s %s %s %s consumer_key=%s token_id=%s realm=%s client=%s reason=%s%s%s",
            event.outcome,
            event.code or "-",
            event.method,
            event.path,
            event.consumer_key,
            event.token_id,
            event.realm,
            event.client,
            event.reason or "-",
            "" if event.scheme == "tba" else f" scheme={event.scheme}",
            f" detail={event.detail}" if event.detail else "",
            extra={"tba_audit": asdict(event)},
        )
    for hook in hooks:
        try:
            hook(event)
        except Exception:  # a broken metrics hook must not turn a decision into a 500
            logger.exception("audit hook %r failed", hook)
