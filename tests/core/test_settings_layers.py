"""Settings layered as deployments use them: the file, every `TBA_GUARD_*` variable over it,
the code's arguments over both; secrets from files; every bad key of every layer at once."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path

import pytest

from tba_guard import GuardSettings, SettingsError
from tba_guard.core.settings import (
    CONCERNS,
    GROUPS,
    CredentialSettings,
    ProtocolSettings,
    ReplaySettings,
    load_layers,
)


def fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def write(tmp_path: Path, text: str, name: str = "tba.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    config = write(tmp_path, '[guard]\nrealm = "111"\nnonce_min_length = 10\n')
    layered = load_layers(config, environ={"TBA_GUARD_REALM": "222"})
    assert layered.settings.realm == "222"
    assert layered.settings.nonce_min_length == 10  # the file's, not overridden
    assert layered.sources["realm"] == "environment (TBA_GUARD_REALM)"
    assert layered.sources["nonce_min_length"] == f"file {config}"
    assert layered.sources["nonce_max_length"] == "default"


def test_the_code_overrides_the_environment_and_the_file(tmp_path: Path) -> None:
    config = write(tmp_path, '[guard]\nrealm = "111"\ntimestamp_tolerance = 60\n')
    settings = GuardSettings.load(
        config,
        environ={"TBA_GUARD_REALM": "222", "TBA_GUARD_TIMESTAMP_TOLERANCE": "90"},
        realm="333",
    )
    assert (settings.realm, settings.timestamp_tolerance) == ("333", 90)


def test_the_file_comes_from_tba_guard_config_when_none_is_given(tmp_path: Path) -> None:
    config = write(tmp_path, '[guard]\nrealm = "111"\n')
    layered = load_layers(environ={"TBA_GUARD_CONFIG": str(config)})
    assert layered.settings.realm == "111"
    assert layered.config == str(config)


def test_a_database_key_in_the_environment_completes_a_file_without_it(tmp_path: Path) -> None:
    """The deployment the docs recommend: the Fernet key outside the settings file."""
    config = write(tmp_path, f'[guard]\ncredential_store = "sqlite:///{tmp_path}/tba.db"\n')
    key = fernet_key()
    settings = GuardSettings.load(config, environ={"TBA_GUARD_CREDENTIAL_KEY": key})
    assert settings.credential_key == (key,)
    with pytest.raises(SettingsError, match="credential_key: required"):
        GuardSettings.load(config, environ={})


def test_a_secret_comes_from_a_mounted_file_without_its_trailing_newline(
    tmp_path: Path,
) -> None:
    first, second = fernet_key(), fernet_key()
    keys = write(tmp_path, f"{first}\n{second}\n", "credential_key")
    session = write(tmp_path, "a-session-secret-of-32-characters\n", "session_secret")
    config = write(
        tmp_path,
        f'[guard]\ncredential_store = "sqlite:///{tmp_path}/tba.db"\n'
        f'credential_key_file = "{keys}"\n',
    )
    layered = load_layers(config, environ={"TBA_GUARD_SESSION_SECRET_FILE": str(session)})
    assert layered.settings.credential_key == (first, second)
    assert layered.settings.session_secret == "a-session-secret-of-32-characters"
    assert layered.sources["session_secret"].startswith(
        "environment (TBA_GUARD_SESSION_SECRET_FILE"
    )


def test_a_store_url_with_its_password_comes_from_a_file(tmp_path: Path) -> None:
    url = write(tmp_path, "redis://:hunter2-password@127.0.0.1:6379/0\n", "replay_store")
    settings = GuardSettings.load(environ={"TBA_GUARD_REPLAY_STORE_FILE": str(url)})
    assert settings.replay_store == "redis://:hunter2-password@127.0.0.1:6379/0"


def test_a_secret_and_its_file_in_one_layer_are_refused(tmp_path: Path) -> None:
    secret = write(tmp_path, "a-session-secret-of-32-characters", "secret")
    with pytest.raises(SettingsError, match="session_secret or session_secret_file, not both"):
        GuardSettings.from_mapping(
            {"session_secret": "another-secret-of-32-characters!", "session_secret_file": secret}
        )


def test_a_higher_layer_replaces_a_secret_given_either_way(tmp_path: Path) -> None:
    secret = write(tmp_path, "a-session-secret-from-the-file!!", "secret")
    config = write(tmp_path, '[guard]\nsession_secret = "a-session-secret-in-the-toml!!!"\n')
    settings = GuardSettings.load(config, environ={"TBA_GUARD_SESSION_SECRET_FILE": str(secret)})
    assert settings.session_secret == "a-session-secret-from-the-file!!"


def test_an_unreadable_secret_file_names_its_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(SettingsError) as caught:
        GuardSettings.load(environ={"TBA_GUARD_CREDENTIAL_KEY_FILE": str(missing)})
    assert f"TBA_GUARD_CREDENTIAL_KEY_FILE: cannot read '{missing}'" in str(caught.value)


def test_only_secret_settings_may_come_from_a_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"unknown key .realm_file."):
        GuardSettings.from_mapping({"realm_file": str(write(tmp_path, "1", "realm"))})


def test_every_bad_key_of_every_layer_is_named_at_once(tmp_path: Path) -> None:
    config = write(tmp_path, '[guard]\nrelam = "1"\nnonce_min_length = 0\n[other]\n')
    with pytest.raises(SettingsError) as caught:
        load_layers(
            config,
            environ={"TBA_GUARD_TIMESTAMP_TOLERANCE": "soon", "TBA_GUARD_NOT_A_SETTING": "1"},
        )
    problems = "\n".join(caught.value.problems)
    for named in (
        "'relam'",
        "'other'",
        "nonce_min_length",
        "TBA_GUARD_TIMESTAMP_TOLERANCE",
        "TBA_GUARD_NOT_A_SETTING",
    ):
        assert named in problems
    assert len(caught.value.problems) == 5


def test_bad_values_in_code_are_all_reported_together() -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings(timestamp_tolerance=0, nonce_max_length=-1, error_detail="loud")  # type: ignore[arg-type]
    assert [p.partition(":")[0] for p in caught.value.problems] == [
        "timestamp_tolerance",
        "nonce_max_length",
        "error_detail",
    ]


def test_a_bad_store_url_is_named_without_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        GuardSettings(replay_store="redis:/:hunter2@localhost/0")
    assert "hunter2" not in str(caught.value)
    assert "replay_store" in str(caught.value)


def test_every_setting_is_declared_once_in_one_concern_with_its_validation_and_doc() -> None:
    """One declaration per setting: no table elsewhere restates a name."""
    declared = [spec.name for group in GROUPS for spec in dataclasses.fields(group)]
    assert len(declared) == len(set(declared))  # no name in two groups
    assert declared == [spec.name for spec in dataclasses.fields(GuardSettings)]
    for spec in dataclasses.fields(GuardSettings):
        assert set(spec.metadata["spec"]) == {"check", "from_text", "parse"}, spec.name
        assert spec.metadata["doc"].endswith("."), spec.name
    assert [group.table for group in GROUPS] == [
        "protocol",
        "request",
        "replay",
        "credentials",
        "flow",
        "oauth2",
        "governance",
        "metrics",
    ]
    assert CONCERNS["replay_store_timeout"] == "replay"
    assert CONCERNS["token_store"] == "flow"


def test_a_group_alone_validates_its_fields_and_their_consistency() -> None:
    assert ReplaySettings(replay_store_timeout=0.5).replay_store_timeout == 0.5
    with pytest.raises(SettingsError) as caught:
        ProtocolSettings(nonce_min_length=10, nonce_max_length=8, timestamp_tolerance=0)
    assert caught.value.problems == (
        "timestamp_tolerance: expected an integer >= 1, got 0",
        "nonce_min_length: larger than nonce_max_length",
    )
    with pytest.raises(SettingsError, match="credential_key: required"):
        CredentialSettings(credential_store="sqlite:///x.db")


def test_the_settings_are_each_group_so_a_component_can_ask_for_one() -> None:
    settings = GuardSettings(replay_store_key_prefix="app:nonce:")
    assert all(isinstance(settings, group) for group in GROUPS)
    assert settings.replay_store_key_prefix == "app:nonce:"


def test_the_file_may_give_each_concern_its_own_table(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[protocol]\nrealm = "111"\n[request]\nbody_max_bytes = 10\n'
        "[replay]\nreplay_store_timeout = 0.5\n[flow]\nrequest_token_ttl = 60\n"
        "[credentials]\ncredential_cache_size = 7\n",
    )
    settings = GuardSettings.from_toml(config)
    assert (settings.realm, settings.body_max_bytes, settings.replay_store_timeout) == (
        "111",
        10,
        0.5,
    )
    assert (settings.request_token_ttl, settings.credential_cache_size) == (60, 7)


def test_a_setting_in_another_concerns_table_or_in_two_tables_is_named(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[guard]\nrealm = "1"\n[protocol]\nrealm = "2"\nbody_max_bytes = 10\n[flow]\nusers = []\n',
    )
    with pytest.raises(SettingsError) as caught:
        GuardSettings.from_toml(config)
    assert caught.value.problems == (
        "protocol.realm: given in two tables",
        "protocol.body_max_bytes: belongs in [request]",
        "flow.users: use a [[users]] table",
    )


def test_a_secret_file_key_belongs_in_its_settings_table(tmp_path: Path) -> None:
    secret = write(tmp_path, "a-session-secret-of-32-characters\n", "secret")
    good = write(tmp_path, f'[flow]\nsession_secret_file = "{secret}"\n', "good.toml")
    assert GuardSettings.from_toml(good).session_secret == "a-session-secret-of-32-characters"
    bad = write(tmp_path, f'[protocol]\nsession_secret_file = "{secret}"\n', "bad.toml")
    with pytest.raises(SettingsError, match=r"protocol.session_secret_file: belongs in \[flow\]"):
        GuardSettings.from_toml(bad)
