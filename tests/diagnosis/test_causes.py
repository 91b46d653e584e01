"""The one table of causes and fixes: every code and every mistake in it, each fix once."""

from __future__ import annotations

import dataclasses
import string

from tba_guard.core.errors import CATALOG, CatalogEntry, ErrorCode
from tba_guard.diagnosis.causes import ADVICE, CAUSES, found
from tba_guard.diagnosis.mistakes import MISTAKES

#: Every field a text of the table may name: what the diagnosis fills in.
FIELDS = frozenset(
    {
        "uri",
        "method",
        "server_uri",
        "header_method",
        "realm",
        "configured",
        "parameters",
        "age",
        "offset",
        "direction",
        "tolerance",
        "skew",
        "host",
        "account",
        # OAuth 2.0's (tba_guard/diagnosis/oauth2.py)
        "kid",
        "alg",
        "sent",
        "expected",
        "exp",
        "span",
        "scope",
        "scopes",
        "path",
        "client_id",
    }
)


def test_every_code_has_one_fix_here_and_the_core_keeps_none() -> None:
    assert [f.name for f in dataclasses.fields(CatalogEntry)] == ["status", "problem", "message"]
    codes = [code for advice in ADVICE for code in advice.codes]
    assert sorted(codes) == sorted(ErrorCode)
    assert len(codes) == len(set(codes))
    for code in CATALOG:
        assert CAUSES[code].fix, code


def test_every_mistake_has_its_cause_and_fix() -> None:
    for mistake in MISTAKES:
        assert mistake.cause is CAUSES[mistake.name]
        assert mistake.cause.explanation, mistake.name
        assert mistake.cause.fix, mistake.name


def test_each_fix_is_written_once_and_each_cause_named_once() -> None:
    fixes = [advice.fix for advice in ADVICE]
    assert len(fixes) == len(set(fixes))
    names = [name for advice in ADVICE for name in advice.causes]
    assert len(names) == len(set(names))
    assert len(CAUSES) == len(names) + len(ErrorCode)


def test_the_hmac_sha1_advice_is_one_fix_for_the_code_the_pitfall_and_the_mistake() -> None:
    fix = CAUSES[ErrorCode.UNKNOWN_ALGORITHM].fix
    assert CAUSES["hmac-sha1-default"].fix == CAUSES["hmac-sha1-signed"].fix == fix
    assert sum("HMAC-SHA256" in advice.fix for advice in ADVICE) == 1


def test_every_field_a_text_names_is_one_the_diagnosis_fills_in() -> None:
    for cause in CAUSES.values():
        for text in (cause.explanation, cause.fix):
            named = {name for _, name, _, _ in string.Formatter().parse(text) if name}
            assert named <= FIELDS, (cause.name, named - FIELDS)


def test_a_pair_joins_its_explanations_and_gives_a_shared_fix_once() -> None:
    names = ["repeated-names-first-value", "repeated-names-last-value"]
    pair = found(names, named=True)
    assert pair.names == tuple(names)
    assert pair.explanation == "; and ".join(CAUSES[name].explanation for name in names)
    assert pair.fix == CAUSES["repeated-names-first-value"].fix
    assert found(["timestamp-in-milliseconds"], named=False).names == ()
