"""The check sequence's declaration, as `tba-guard explain` reads it: which checks change a
store, and that a fresh verification has established nothing a check needs."""

from __future__ import annotations

import pytest

from tba_guard.core.checks import Step
from tba_guard.core.request import parse_parameters, request_from_url
from tba_guard.core.scheme import Verification, scheme_word
from tba_guard.core.sequence import OAUTH, SEQUENCE, TIMESTAMP
from tba_guard.stores.memory import MemoryReplayStore, StaticCredentials
from tests.support import BASE_URL, NOW, make_settings, oauth_header

URL = f"{BASE_URL}/services/rest/orders"


def test_only_the_verifier_and_the_replay_claim_change_a_store() -> None:
    # `explain` runs every other check on a client's request and never these two.
    assert [check.name for check in SEQUENCE if check.writes] == [
        "InvalidVerifier",
        "claim the replay key",
    ]


@pytest.mark.parametrize("step", list(Step))
def test_a_fresh_verification_has_none_of_what_checks_need(step: Step) -> None:
    # `explain` skips a check whose needs are None, naming what is missing.
    headers = {"Authorization": oauth_header("GET", URL)}
    request = parse_parameters(request_from_url("GET", URL, headers, ""))
    v = Verification(
        request,
        step,
        make_settings(),
        now=NOW,
        credentials=StaticCredentials(),
        replay_store=MemoryReplayStore(),
    )
    needs = {need.field for check in SEQUENCE for need in check.needs}
    assert needs >= {"request_token", "token", "integration", "key", "token_secret"}
    assert {need: getattr(v, need) for need in needs} == dict.fromkeys(needs)


def test_a_scheme_and_a_need_name_themselves() -> None:
    assert repr(OAUTH) == "Scheme('OAuth')"
    assert repr(TIMESTAMP) == "Need('timestamp')"
    assert OAUTH.sequence == SEQUENCE


@pytest.mark.parametrize(
    ("authorization", "word"),
    [(None, ""), ("", ""), ("  ", ""), ('OAuth realm="1"', "oauth"), ("\tBearer x", "bearer")],
)
def test_the_scheme_word_is_the_headers_first_word_lower_cased(
    authorization: str | None, word: str
) -> None:
    assert scheme_word(authorization) == word
