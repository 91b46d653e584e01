"""The storage boundary's own types: the replay key's bytes and the quota error."""

from __future__ import annotations

from tba_guard import ReplayKey
from tba_guard.core.protocols import RequestTokenQuotaExceeded
from tests.support import NOW


def test_a_replay_key_with_a_lone_surrogate_still_has_its_own_bytes() -> None:
    # A store hashes or sends these bytes: any str a key holds must encode, and stay distinct.
    odd = ReplayKey("ck\udcff", "tk", "nonce-\udc80", NOW)
    assert odd.identity() == f"3:ck\udcff2:tk7:nonce-\udc80{NOW}".encode("utf-8", "surrogateescape")
    assert odd.identity() != ReplayKey("ck\udcfe", "tk", "nonce-\udc80", NOW).identity()


def test_the_quota_error_says_how_many_live_request_tokens_are_allowed() -> None:
    error = RequestTokenQuotaExceeded("ck-sync", 25)
    assert (error.consumer_key, error.quota) == ("ck-sync", 25)
    assert "25" in str(error)
    assert "quota" in str(error)
