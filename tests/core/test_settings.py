"""Settings from code, the environment and TOML agree, and every error names its key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tba_guard import GuardSettings, Integration, SettingsError, Token
from tba_guard.core.records import User

TOML = """
[guard]
realm = "1234567"
timestamp_tolerance = 120
signature_methods = ["HMAC-SHA256", "HMAC-SHA512"]
nonce_min_length = 8
nonce_max_length = 40
feature_enabled = true
error_detail = "opaque"
replay_store = "memory"
public_url = "https://1234567.restlets.example.com/"
exempt_paths = ["/healthz"]

[[integrations]]
name = "Order sync"
consumer_key = "ck"
consumer_secret = "cs-order-sync-secret"
state = "blocked"
authorization_flow = true
callback_url = "https://app.example.com/tba/callback"

[[tokens]]
token_id = "tk"
token_secret = "ts-order-sync-secret"
consumer_key = "ck"
entity = "38"
role = "3"
active = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tba.toml"
    path.write_text(text)
    return path


def test_toml_environment_and_code_agree(tmp_path: Path) -> None:
    from_file = GuardSettings.from_toml(write(tmp_path, TOML))
    from_env = GuardSettings.from_env(
        {
            "TBA_GUARD_REALM": "1234567",
            "TBA_GUARD_TIMESTAMP_TOLERANCE": "120",
            "TBA_GUARD_SIGNATURE_METHODS": "HMAC-SHA256, HMAC-SHA512",
            "TBA_GUARD_NONCE_MIN_LENGTH": "8",
            "TBA_GUARD_NONCE_MAX_LENGTH": "40",
            "TBA_GUARD_FEATURE_ENABLED": "true",
            "TBA_GUARD_ERROR_DETAIL": "opaque",
            "TBA_GUARD_REPLAY_STORE": "memory",
            "TBA_GUARD_PUBLIC_URL": "https://1234567.restlets.example.com/",
            "TBA_GUARD_EXEMPT_PATHS": '["/healthz"]',
            "TBA_GUARD_INTEGRATIONS": '[{"name": "Order sync", "consumer_key": "ck",'
            ' "consumer_secret": "cs-order-sync-secret",'
            ' "state": "blocked", "authorization_flow": true,'
            ' "callback_url": "https://app.example.com/tba/callback"}]',
            "TBA_GUARD_TOKENS": '[{"token_id": "tk", "token_secret": "ts-order-sync-secret",'
            ' "consumer_key": "ck",'
            ' "entity": "38", "role": "3", "active": false}]',
            "UNRELATED": "ignored",
        }
    )
    in_code = GuardSettings(
        realm="1234567",
        timestamp_tolerance=120,
        signature_methods=("HMAC-SHA256", "HMAC-SHA512"),
        nonce_min_length=8,
        nonce_max_length=40,
        error_detail="opaque",
        public_url="https://1234567.restlets.example.com",
        exempt_paths=("/healthz",),
        integrations=(
            Integration(
                "ck",
                "cs-order-sync-secret",
                name="Order sync",
                state="blocked",
                authorization_flow=True,
                callback_url="https://app.example.com/tba/callback",
            ),
        ),
        tokens=(Token("tk", "ts-order-sync-secret", "ck", entity="38", role="3", active=False),),
    )
    assert from_file == from_env == in_code
    assert in_code.public_url == "https://1234567.restlets.example.com"


def test_defaults_follow_netsuite() -> None:
    settings = GuardSettings()
    assert settings.timestamp_tolerance == 300
    assert settings.signature_methods == ("HMAC-SHA256",)
    assert (settings.nonce_min_length, settings.nonce_max_length) == (6, 64)
    assert settings.replay_store == "memory"
    assert settings.error_detail == "code"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[guard]\nrelam = "1"\n', "'relam'"),
        ("[guard]\ntimestamp_tolerance = -1\n", "timestamp_tolerance"),
        ('[guard]\ntimestamp_tolerance = "300"\n', "timestamp_tolerance"),
        ('[guard]\nsignature_methods = ["MD5"]\n', "signature_methods[0]"),
        ('[guard]\nsignature_methods = "HMAC-SHA256"\n', "signature_methods"),
        ('[guard]\nerror_detail = "verbose"\n', "error_detail"),
        ('[guard]\nreplay_store = "memcached://x"\n', "replay_store"),
        ('[guard]\nexempt_paths = ["healthz"]\n', "exempt_paths[0]"),
        ("[guard]\nnonce_min_length = 10\nnonce_max_length = 5\n", "nonce_min_length"),
        ('[guard]\nfeature_enabled = "yes"\n', "feature_enabled"),
        (
            '[[integrations]]\nconsumer_key = "k"\n',
            "integrations[0]: missing key 'consumer_secret'",
        ),
        (
            '[[integrations]]\nconsumer_key = "k"\n'
            'consumer_secret = "s-16-characters+"\nstate = "on"\n',
            "integrations[0].state",
        ),
        (
            '[[integrations]]\nconsumer_key = "k"\n'
            'consumer_secret = "s-16-characters+"\ncolour = "red"\n',
            "integrations[0]: unknown key 'colour'",
        ),
        (
            '[[tokens]]\ntoken_id = "t"\ntoken_secret = ""\nconsumer_key = "k"\n',
            "tokens[0].token_secret",
        ),
        (
            '[[tokens]]\ntoken_id = "t"\n'
            'token_secret = "s-16-characters+"\nconsumer_key = "k"\nactive = 1\n',
            "tokens[0].active",
        ),
        (
            '[[tokens]]\ntoken_id = "t"\ntoken_secret = "s-16-characters+"\nconsumer_key = "k"\n'
            'expires_at = "soon"\n',
            "tokens[0].expires_at",
        ),
        (
            '[[tokens]]\ntoken_id = "t"\n'
            'token_secret = "s-16-characters+"\nconsumer_key = "k"\naccount = 7\n',
            "tokens[0].account",
        ),
        (
            '[[integrations]]\nconsumer_key = "k"\n'
            'consumer_secret = "s-16-characters+"\nname = 3\n',
            "integrations[0].name",
        ),
        ("[other]\nx = 1\n", "'other'"),
        ("[guard\n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings.from_toml(write(tmp_path, text))
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"TBA_GUARD_REALMS": "1"}, "TBA_GUARD_REALMS"),
        ({"TBA_GUARD_TIMESTAMP_TOLERANCE": "five"}, "TBA_GUARD_TIMESTAMP_TOLERANCE"),
        ({"TBA_GUARD_FEATURE_ENABLED": "maybe"}, "TBA_GUARD_FEATURE_ENABLED"),
        ({"TBA_GUARD_TOKENS": "[{"}, "TBA_GUARD_TOKENS"),
    ],
)
def test_bad_environment_names_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings.from_env(environ)
    assert named in str(caught.value)


def test_secrets_do_not_appear_in_reprs() -> None:
    settings = GuardSettings(
        integrations=[Integration("ck", "SECRET-CS-1f2e-3d4c")],
        tokens=[Token("tk", "SECRET-TS-9a8b-7c6d", "ck")],
    )
    shown = repr(settings) + repr(settings.integrations) + repr(settings.tokens) + str(settings)
    assert "ck" in shown
    assert "tk" in shown
    assert "SECRET" not in shown


# --- the authorization flow's settings: users, token lifetime and store ------------------------


def test_flow_settings_come_from_toml_with_users(tmp_path: Path) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(
        textwrap.dedent(
            """
            [guard]
            request_token_ttl = 120
            authorize_path = "/consent"
            token_store = "redis://127.0.0.1:6379/0"

            [[users]]
            entity = "38"
            name = "alice"
            password = "pw"
            roles = ["3", "1000"]
            """
        )
    )
    settings = GuardSettings.from_toml(path)
    assert settings.request_token_ttl == 120
    assert settings.authorize_path == "/consent"
    assert settings.users == (User("38", "alice", "pw", ("3", "1000")),)
    assert "pw" not in repr(settings)
    assert "redis://" not in repr(settings)


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ([{"entity": "38", "name": "a", "roles": ["3"], "colour": "red"}], "users[0]"),
        ([{"entity": "38", "name": "a", "roles": "3"}], "users[0].roles"),
        ([{"name": "a"}], "entity"),
    ],
)
def test_bad_users_are_errors_naming_the_key(users: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        GuardSettings(users=users)


def test_flow_settings_come_from_the_environment() -> None:
    settings = GuardSettings.from_env(
        {
            "TBA_GUARD_REQUEST_TOKEN_TTL": "90",
            "TBA_GUARD_USERS": '[{"entity": "7", "name": "eve", "roles": ["3"]}]',
        }
    )
    assert settings.request_token_ttl == 90
    assert settings.users[0].roles == ("3",)
