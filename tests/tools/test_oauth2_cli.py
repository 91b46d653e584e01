"""OAuth 2.0 from the command line, run as a user runs it (a process per command): integrations
with a client ID and schemes, certificates added, listed and revoked (in the database, or as a
`[[certificates]]` table for a settings file), the guard's key made by `oauth2 keygen`, the
usage counts, and `sign --oauth2` against a running `tba-guard serve`."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tba_guard.core.jose import key_id, load_signing_keys
from tba_guard.core.settings import GuardSettings
from tba_guard.stores.database.store import DatabaseCredentials
from tests.support import run_cli, running_server
from tests.support.databases import database_url, fresh_key, printed, write_config
from tests.support.oauth2 import certificate_pem, ec_key, guard_key, private_pem, rsa_key
from tests.support.servers import free_port

CLIENT_ID = "client-order-sync"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
RESTLET = "/app/site/hosting/restlet.nl?script=1&deploy=1"
DAY = 86400.0


def cli(*args: str) -> str:
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def refused(*args: str) -> str:
    """A command that fails as a usage error: exit 2, one line on stderr, no traceback."""
    done = run_cli(*args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def certificate_file(
    folder: Path, name: str, key: object = None, *, days: float = 365, not_before: float = 0
) -> str:
    """A certificate file, valid from an hour ago (or `not_before`) for `days`."""
    path = folder / f"{name}.pem"
    start = not_before or time.time() - 3600
    path.write_text(certificate_pem(key or ec_key(), days=days, not_before=start))
    return str(path)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A migrated credential database: its URL, its key, and a settings file naming both."""
    with database_url(str(request.param), tmp_path) as url:
        key = fresh_key()
        config = write_config(tmp_path / "tba.toml", credential_store=url, credential_key=key)
        cli("db", "upgrade", "--config", str(config))
        yield url, key, config


@pytest.fixture
def config(database: tuple[str, str, Path]) -> str:
    """The settings file, with the order-sync integration (client ID CLIENT_ID) in it."""
    path = str(database[2])
    cli("integration", "add", "--name", "Order sync", "--consumer-key", "ck-order-sync",
        "--client-id", CLIENT_ID, "--config", path)  # fmt: skip
    return path


def rows_of(listing: str) -> dict[str, list[str]]:
    """A listing's rows by their first column."""
    return {line.split()[0]: line.split() for line in listing.splitlines()[1:] if line.strip()}


# --- integrations ----------------------------------------------------------------------------


def test_integration_add_takes_a_client_id_and_schemes_and_list_shows_them(
    database: tuple[str, str, Path],
) -> None:
    config = str(database[2])
    added = cli("integration", "add", "--name", "Order sync", "--client-id", CLIENT_ID,
                "--schemes", "oauth2", "--config", config)  # fmt: skip
    consumer_key = printed(added, "consumer key")
    assert printed(added, "client id") == CLIENT_ID
    assert printed(added, "schemes") == "oauth2"
    cli("integration", "add", "--name", "Legacy", "--consumer-key", "ck-legacy", "--config", config)
    listing = cli("integration", "list", "--config", config)
    assert "CLIENT ID" in listing.splitlines()[0]
    assert rows_of(listing)[consumer_key][1:4] == ["enabled", CLIENT_ID, "oauth2"]
    assert rows_of(listing)["ck-legacy"][1:4] == ["enabled", "-", "tba,oauth2"]


def test_integration_schemes_moves_an_integration_between_schemes(config: str) -> None:
    assert "may use tba" in cli(
        "integration", "schemes", "ck-order-sync", "tba", "--config", config
    )
    assert rows_of(cli("integration", "list", "--config", config))["ck-order-sync"][3] == "tba"
    cli("integration", "schemes", "ck-order-sync", "oauth2,tba", "--config", config)
    assert rows_of(cli("integration", "list", "--config", config))["ck-order-sync"][3] == (
        "tba,oauth2"
    )
    assert "expected tba, oauth2" in refused(
        "integration", "schemes", "ck-order-sync", "oauth1", "--config", config
    )
    assert "no integration" in refused(
        "integration", "schemes", "ck-unknown", "tba", "--config", config
    )


def test_integration_client_id_gives_and_takes_away_the_client_id(config: str) -> None:
    cli("integration", "client-id", "ck-order-sync", "client-renamed", "--config", config)
    assert rows_of(cli("integration", "list", "--config", config))["ck-order-sync"][2] == (
        "client-renamed"
    )
    cli("integration", "client-id", "ck-order-sync", "", "--config", config)
    assert rows_of(cli("integration", "list", "--config", config))["ck-order-sync"][2] == "-"


def test_a_client_id_already_taken_is_refused_in_one_line(config: str) -> None:
    error = refused("integration", "add", "--name", "Copy", "--client-id", CLIENT_ID,
                    "--config", config)  # fmt: skip
    assert "already integration 'ck-order-sync'" in error
    assert len(error.strip().splitlines()) == 1


# --- certificates in the database --------------------------------------------------------------


def test_certificate_add_prints_its_id_kind_and_validity(config: str, tmp_path: Path) -> None:
    pem = certificate_file(tmp_path, "rsa", rsa_key(3072), days=365)
    done = run_cli("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38",
                   "--role", "3", "--certificate", pem, "--config", config)  # fmt: skip
    assert done.returncode == 0, done.stderr
    certificate_id = printed(done.stdout, "certificate id")
    assert len(certificate_id) >= 32
    assert printed(done.stdout, "key") == "RSA 3072"
    assert " to " in printed(done.stdout, "valid")
    assert "WARNING" not in done.stdout + done.stderr  # a year left
    assert "certificate.add" in done.stderr  # the audit line
    assert "BEGIN CERTIFICATE" not in done.stdout + done.stderr


def test_certificate_add_warns_when_it_expires_within_30_days(config: str, tmp_path: Path) -> None:
    pem = certificate_file(tmp_path, "short", days=20)
    done = run_cli("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38",
                   "--role", "3", "--certificate", pem, "--config", config)  # fmt: skip
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warning) == 1
    assert "expires in 20 days" in warning[0]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda folder: certificate_file(folder, "rsa2048", rsa_key(2048)), "2048 bits"),
        (lambda folder: certificate_file(folder, "long", days=3 * 365), "more than two years"),
        (
            lambda folder: certificate_file(
                folder, "old", days=10, not_before=time.time() - 20 * DAY
            ),
            "expired",
        ),
    ],
    ids=["rsa-2048", "three-years", "expired"],
)
def test_certificate_add_refuses_what_the_guard_would_refuse(
    config: str, tmp_path: Path, make: Callable[[Path], str], reason: str
) -> None:
    pem = make(tmp_path)
    error = refused("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38",
                    "--role", "3", "--certificate", pem, "--config", config)  # fmt: skip
    assert reason in error
    assert cli("certificate", "list", "--config", config).strip().count("\n") == 0  # none


def test_a_sixth_active_certificate_is_refused(config: str, tmp_path: Path) -> None:
    for n in range(5):
        cli("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38", "--role", "3",
            "--certificate", certificate_file(tmp_path, f"c{n}"), "--certificate-id", f"cert-{n}",
            "--config", config)  # fmt: skip
    error = refused("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38",
                    "--role", "3", "--certificate", certificate_file(tmp_path, "c5"),
                    "--config", config)  # fmt: skip
    assert "5 active certificates" in error


def test_certificate_list_and_revoke_keep_the_row_and_flag_the_expiring(
    config: str, tmp_path: Path
) -> None:
    for name, days in (("cert-soon", 10), ("cert-later", 300), ("cert-gone", 10)):
        cli("certificate", "add", "--client-id", CLIENT_ID, "--entity", "38", "--role", "3",
            "--certificate", certificate_file(tmp_path, name, days=days),
            "--certificate-id", name, "--config", config)  # fmt: skip
    revoked = run_cli("certificate", "revoke", "cert-gone", "--config", config)
    assert revoked.returncode == 0, revoked.stderr
    assert "certificate.revoke" in revoked.stderr
    listing = cli("certificate", "list", "--config", config)
    rows = rows_of(listing)
    assert rows["cert-soon"][1:3] == ["active", CLIENT_ID]
    assert rows["cert-gone"][1] == "revoked"  # kept
    assert rows["cert-later"][5:7] == ["EC", "P-256"]
    assert "!" in rows["cert-soon"]  # active, and expiring within 30 days
    assert "!" not in rows["cert-later"]
    assert "!" not in rows["cert-gone"]  # revoked: nothing to renew
    assert "no certificate with id" in refused(
        "certificate", "revoke", "cert-unknown", "--config", config
    )
    only = cli("certificate", "list", "--client-id", "client-other", "--config", config)
    assert rows_of(only) == {}


# --- certificates in a settings file -----------------------------------------------------------


SETTINGS = """
[protocol]
realm = "123456"
[oauth2]
oauth2_signing_keys_file = "{key_file}"

[[integrations]]
name = "Order sync"
consumer_key = "ck-order-sync"
consumer_secret = "cs-order-sync-secret-0123456789"
client_id = "{client_id}"
"""


def settings_file(folder: Path) -> Path:
    key_file = folder / "guard.pem"
    key_file.write_text(private_pem(guard_key()))
    path = folder / "tba.toml"
    path.write_text(SETTINGS.format(key_file=key_file, client_id=CLIENT_ID))
    return path


def toml_mapping(folder: Path, *extra: str) -> str:
    pem = certificate_file(folder, "client", rsa_key(3072))
    done = run_cli("certificate", "add", "--toml", "--client-id", CLIENT_ID, "--entity", "38",
                   "--role", "3", "--certificate", pem, *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_certificate_add_toml_prints_a_table_a_settings_file_takes(tmp_path: Path) -> None:
    table = toml_mapping(tmp_path, "--certificate-id", "cert-rsa")
    (mapping,) = tomllib.loads(table)["certificates"]
    assert (mapping["certificate_id"], mapping["client_id"]) == ("cert-rsa", CLIENT_ID)
    config = settings_file(tmp_path)
    config.write_text(config.read_text() + table)
    settings = GuardSettings.from_toml(config)
    (loaded,) = settings.certificates
    assert (loaded.certificate_id, loaded.entity, loaded.role) == ("cert-rsa", "38", "3")
    assert loaded.certificate.strip() == (tmp_path / "client.pem").read_text().strip()


def test_certificate_add_toml_applies_the_same_rules_without_a_database(tmp_path: Path) -> None:
    pem = certificate_file(tmp_path, "rsa2048", rsa_key(2048))
    error = refused("certificate", "add", "--toml", "--client-id", CLIENT_ID, "--entity", "38",
                    "--role", "3", "--certificate", pem)  # fmt: skip
    assert "2048 bits" in error
    soon_pem = certificate_file(tmp_path, "soon", days=5)
    soon = run_cli("certificate", "add", "--toml", "--client-id", CLIENT_ID, "--entity", "38",
                   "--role", "3", "--certificate", soon_pem)  # fmt: skip
    assert soon.returncode == 0
    assert "WARNING" in soon.stderr
    assert "WARNING" not in soon.stdout  # the table stays pasteable


def test_certificate_list_reads_the_settings_certificates(tmp_path: Path) -> None:
    config = settings_file(tmp_path)
    config.write_text(config.read_text() + toml_mapping(tmp_path, "--certificate-id", "cert-rsa"))
    listing = cli("certificate", "list", "--config", str(config))
    assert rows_of(listing)["cert-rsa"][1:3] == ["active", CLIENT_ID]
    assert "RSA" in rows_of(listing)["cert-rsa"]


# --- oauth2 keygen -----------------------------------------------------------------------------


def test_oauth2_keygen_writes_a_private_key_0600_and_prints_only_its_kid(tmp_path: Path) -> None:
    output = tmp_path / "guard.pem"
    done = run_cli("oauth2", "keygen", "--output", str(output))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    text = output.read_text()
    key = serialization.load_pem_private_key(text.encode(), password=None)
    assert key.key_size == 3072  # type: ignore[union-attr]
    assert printed(done.stdout, "kid") == key_id(key.public_key())
    assert f'oauth2_signing_keys_file = "{output}"' in done.stdout
    for line in text.splitlines()[1:-1]:
        assert line not in done.stdout + done.stderr  # never the key
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    (loaded,) = load_signing_keys((text,), "PS256")
    assert loaded.kid == printed(done.stdout, "kid")


def test_oauth2_keygen_refuses_to_overwrite_and_makes_ec_keys(tmp_path: Path) -> None:
    output = tmp_path / "guard.pem"
    output.write_text("keep me")
    assert "exists" in refused("oauth2", "keygen", "--output", str(output))
    assert output.read_text() == "keep me"
    ec_output = tmp_path / "guard-ec.pem"
    cli("oauth2", "keygen", "--curve", "P-384", "--output", str(ec_output))
    (loaded,) = load_signing_keys((ec_output.read_text(),), "PS256")
    assert loaded.algorithm == "ES384"


# --- usage -------------------------------------------------------------------------------------


async def test_usage_shows_the_counts_and_since_filters_them(
    database: tuple[str, str, Path],
) -> None:
    url, key, config = database
    cli("integration", "add", "--name", "Order", "--consumer-key", "ck-a", "--config", str(config))
    store = DatabaseCredentials(url, [key], listen=False)
    now = time.time()
    try:
        await store.flush_usage(
            {
                ("ck-a", "tk-old", "tba"): (7, now - 10 * DAY),
                ("ck-a", "cert-1", "oauth2"): (3, now - 60),
            }
        )
        await store.flush_usage({("ck-a", "cert-1", "oauth2"): (2, now)})
    finally:
        store.close()
    rows = [line.split() for line in cli("usage", "--config", str(config)).splitlines()[1:]]
    assert {(r[2], r[3], r[4]) for r in rows} == {("tk-old", "tba", "7"), ("cert-1", "oauth2", "5")}
    assert all(r[:2] == ["ck-a", "Order"] for r in rows)
    recent = cli("usage", "--since", "1", "--config", str(config)).splitlines()[1:]
    assert [line.split()[2] for line in recent] == ["cert-1"]


def test_usage_without_a_database_is_one_line_of_error(tmp_path: Path) -> None:
    error = refused("usage", "--config", str(settings_file(tmp_path)))
    assert "name no database" in error
    assert len(error.strip().splitlines()) == 1


# --- sign --oauth2 against a running token endpoint ----------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`tba-guard serve` with the guard's key and two mappings from `certificate add --toml`:
    an RSA one (its key in client.key) and an EC P-521 one (in client-ec.key)."""
    config = settings_file(tmp_path)
    table = toml_mapping(tmp_path, "--certificate-id", "cert-rsa")
    ec_pem = certificate_file(tmp_path, "client-ec", ec_key("secp521r1"))
    ec_table = cli("certificate", "add", "--toml", "--client-id", CLIENT_ID, "--entity", "38",
                   "--role", "3", "--certificate", ec_pem,
                   "--certificate-id", "cert-ec")  # fmt: skip
    config.write_text(config.read_text() + table + ec_table)
    (tmp_path / "client.key").write_text(private_pem(rsa_key(3072)))
    (tmp_path / "client-ec.key").write_text(private_pem(ec_key("secp521r1")))
    port = free_port()
    command = ["-m", "tba_guard.tools.cli", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with running_server([sys.executable, *command], log, port=port,
                        env={"PYTHONUNBUFFERED": "1"}):  # fmt: skip
        yield f"http://127.0.0.1:{port}", config


def sign_oauth2(base: str, config: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("sign", "--oauth2", "--certificate-id", extra[0], "--key",
                   str(config.with_name(key)), "--url", base + TOKEN_PATH, *extra[1:],
                   "--config", str(config))  # fmt: skip


def test_sign_oauth2_prints_a_bearer_value_the_guard_accepts(served: tuple[str, Path]) -> None:
    base, config = served
    done = sign_oauth2(base, config, "client.key", "cert-rsa")  # client ID from the mapping
    assert done.returncode == 0, done.stderr
    header = done.stdout.strip()
    assert header.startswith("Bearer ")
    assert len(header.splitlines()) == 1
    answer = httpx.get(base + RESTLET, headers={"Authorization": header}, timeout=10)
    assert answer.status_code == 200, answer.text
    identity = answer.json()
    assert (identity["consumer_key"], identity["token_id"]) == ("ck-order-sync", "cert-rsa")
    assert identity["scheme"] == "oauth2"
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_sign_oauth2_reports_a_refusal_as_json_on_stderr_and_exits_1(
    served: tuple[str, Path],
) -> None:
    base, config = served
    wrong = sign_oauth2(base, config, "client.key", "cert-rsa", "--client-id", "client-else")
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert json.loads(wrong.stderr)["error"] == "invalid_client"
    # The EC P-521 key signs ES512, as its certificate allows: accepted.
    accepted = sign_oauth2(base, config, "client-ec.key", "cert-ec")
    assert accepted.returncode == 0, accepted.stderr
    # The RSA key under the EC mapping: refused (its signature does not verify).
    mismatched = sign_oauth2(base, config, "client.key", "cert-ec")
    assert mismatched.returncode == 1
    assert json.loads(mismatched.stderr)["error"] == "invalid_client"


def test_sign_oauth2_needs_its_options_and_tba_sign_is_unchanged(tmp_path: Path) -> None:
    assert "--oauth2 needs --key" in refused(
        "sign", "--oauth2", "--certificate-id", "cert-rsa", "--url", "https://h" + TOKEN_PATH
    )
    assert "goes with --oauth2" in refused("sign", "--certificate-id", "x", "GET", "https://h/")
    assert "--consumer-key" in refused("sign", "GET", "https://h/")
    unknown = refused("sign", "--oauth2", "--certificate-id", "cert-unknown", "--key",
                      str(settings_file(tmp_path)), "--url", "https://h" + TOKEN_PATH)  # fmt: skip
    assert "--key" in unknown  # not a key: said so, without echoing the file
    config = settings_file(tmp_path)
    (tmp_path / "client.key").write_text(private_pem(rsa_key(3072)))
    no_mapping = refused("sign", "--oauth2", "--certificate-id", "cert-unknown", "--key",
                         str(tmp_path / "client.key"), "--url", "https://h" + TOKEN_PATH,
                         "--config", str(config))  # fmt: skip
    assert "no such mapping" in no_mapping


def test_db_import_copies_a_settings_files_mappings_with_their_integrations(
    database: tuple[str, str, Path], tmp_path: Path
) -> None:
    config = str(database[2])
    active = Path(certificate_file(tmp_path, "active")).read_text()
    gone = Path(certificate_file(tmp_path, "gone", rsa_key())).read_text()
    source = tmp_path / "source.toml"
    source.write_text(
        f"""
[[integrations]]
consumer_key = "ck-imported"
consumer_secret = "cs-imported-secret-0123456789"
client_id = "client-imported"

[[certificates]]
certificate_id = "cert-active"
client_id = "client-imported"
entity = "38"
role = "3"
certificate = '''{active}'''

[[certificates]]
certificate_id = "cert-gone"
client_id = "client-imported"
entity = "38"
role = "3"
certificate = '''{gone}'''
state = "revoked"
"""
    )
    first = cli("db", "import", str(source), "--config", config)
    assert "added   certificate cert-active" in first
    assert "added   certificate cert-gone" in first
    states = {
        row[0]: row for row in rows_of(cli("certificate", "list", "--config", config)).values()
    }
    assert "active" in states["cert-active"]
    assert "revoked" in states["cert-gone"]
    again = cli("db", "import", str(source), "--config", config)
    assert "skipped certificate cert-active" in again
    assert "0 added, 3 skipped." in again
