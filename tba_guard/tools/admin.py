"""`tba-guard db|integration|token|certificate|usage`: the credential database from the
command line; and `tba-guard oauth2 keygen`, the guard's own OAuth 2.0 signing key.

The database and its key come from the settings, found as for every command (`--config`,
`$TBA_GUARD_CONFIG`, `TBA_GUARD_*`). A new consumer secret or token secret is printed once, by
the command that creates it, and never again; every change goes to the audit log (stderr,
unless the application configured logging), with identifiers only.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..core.records import SCHEME_NAMES
from ..core.settings import GuardSettings, SettingsError
from ..stores import DATABASE_STORE, needs_extra
from .demo import load_settings, resolve_settings

#: The commands whose changes go to the audit log on stderr.
AUDITED_COMMANDS = ("db", "integration", "token", "certificate")
#: A certificate expiring sooner than this is flagged when added or listed: time to map its
#: successor (an integration may hold five active ones, for the overlap).
EXPIRY_WARNING_SECONDS = 30 * 86400
DAY = 86400.0


class AdminError(Exception):
    """A command that cannot be carried out: one line to stderr, exit 2."""


@contextmanager
def credential_admin(config: str | None) -> Iterator[Any]:
    """A `CredentialAdmin` on the database the settings name; its errors as `AdminError`."""
    settings = database_settings(config)
    with needs_extra(DATABASE_STORE):
        from sqlalchemy.exc import SQLAlchemyError

        from ..stores.database import connect
        from ..stores.database.admin import CredentialAdmin, NotFound, Refused
        from ..stores.database.sealing import Sealer, SealError

        engine = connect.create(settings.credential_store, timeout=10.0)  # imports the driver
    try:
        yield CredentialAdmin(engine, Sealer(settings.credential_key))
    except (NotFound, Refused, SealError) as exc:
        raise AdminError(str(exc)) from None
    except SQLAlchemyError as exc:
        where = connect.shown(settings.credential_store)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise AdminError(f"database {where}: {reason}") from None
    finally:
        engine.dispose()


def database_settings(config: str | None) -> GuardSettings:
    settings, _, where = resolve_settings(config)
    if settings.credential_store == "settings":
        raise AdminError(
            f"the settings ({where}) name no database: set credential_store = "
            '"sqlite:///path/tba.db" or "postgresql://…", and credential_key'
        )
    return settings


def audit_to_stderr() -> None:
    """Show the audit log's change lines, unless logging was configured by someone else."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("audit: %(message)s"))
    audit = logging.getLogger("tba_guard.audit")
    audit.addHandler(handler)
    audit.setLevel(logging.INFO)


def _print_secret_notice(what: str) -> None:
    print(f"The {what} is shown this once and cannot be shown again: store it now.")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


# --- db -------------------------------------------------------------------------------------------


def run_db_upgrade(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin, needs_extra(DATABASE_STORE):
        from ..stores.database import migrate

        before = migrate.current(admin.engine)
        migrate.upgrade(admin.engine)
        after = migrate.current(admin.engine)
    if before == after:
        print(f"The database is at revision {after}, the latest: nothing to do.")
    else:
        print(f"The database went from revision {before or '(empty)'} to {after}.")
    return 0


def run_db_current(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin, needs_extra(DATABASE_STORE):
        from ..stores.database import migrate

        revision = migrate.current(admin.engine)
        head = migrate.head()
    state = "the latest" if revision == head else f"run tba-guard db upgrade for {head}"
    print(f"revision {revision or '(none)'}: {state}")
    return 0 if revision == head else 1


def run_db_import(args: argparse.Namespace) -> int:
    source = load_settings(args.file)
    with credential_admin(args.config) as admin:
        result = admin.import_records(source.integrations, source.tokens)
        added, skipped = list(result.added), list(result.skipped)
        # The OAuth 2.0 mappings after their integrations, checked as `certificate add` checks.
        for mapping in source.certificates:
            name = f"certificate {mapping.certificate_id}"
            if any(m.certificate_id == mapping.certificate_id for m in admin.certificates()):
                skipped.append(name)
                continue
            admin.add_certificate(
                mapping.client_id,
                mapping.entity,
                mapping.role,
                mapping.certificate,
                certificate_id=mapping.certificate_id,
            )
            if mapping.state == "revoked":
                admin.revoke_certificate(mapping.certificate_id)
            added.append(name)
    for name in added:
        print(f"added   {name}")
    for name in skipped:
        print(f"skipped {name} (already in the database, left as it is)")
    print(f"{len(added)} added, {len(skipped)} skipped.")
    return 0


def run_db_rekey(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        count = admin.rekey()
    print(f"{count} secrets sealed again under the first credential_key.")
    return 0


def run_db_keygen(args: argparse.Namespace) -> int:
    with needs_extra("db keygen"):
        from ..stores.database.sealing import new_key

    print(new_key())
    return 0


# --- integration ----------------------------------------------------------------------------------


def run_integration_add(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        integration = admin.add_integration(
            args.name,
            consumer_key=args.consumer_key,
            authorization_flow=args.authorization_flow,
            callback_url=args.callback_url,
            state="blocked" if args.blocked else "enabled",
            client_id=args.client_id,
            schemes=args.schemes,
            concurrency_limit=args.concurrency,
        )
    print(f"Integration {integration.name!r} added ({integration.state}).")
    print(f"consumer key:    {integration.consumer_key}")
    print(f"client id:       {integration.client_id or '-'}")
    print(f"schemes:         {','.join(integration.schemes)}")
    print(f"concurrency:     {_allocation(integration.concurrency_limit)}")
    print(f"consumer secret: {integration.consumer_secret}")
    _print_secret_notice("consumer secret")
    return 0


def run_integration_list(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        found = admin.integrations()
    rows = [
        [
            i.consumer_key,
            i.state,
            i.client_id or "-",
            ",".join(i.schemes),
            "" if i.concurrency_limit is None else str(i.concurrency_limit),
            "yes" if i.authorization_flow else "no",
            str(i.tokens),
            _when(i.created_at),
            _when(i.last_used),
            i.name,
        ]
        for i in found
    ]
    header = [
        "CONSUMER KEY", "STATE", "CLIENT ID", "SCHEMES", "CONCURRENCY", "FLOW", "TOKENS",
        "CREATED", "LAST USED", "NAME",
    ]  # fmt: skip
    _table(header, rows)
    return 0


def run_integration_schemes(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        admin.set_schemes(args.consumer_key, args.schemes)
    print(f"Integration {args.consumer_key} may use {','.join(args.schemes)}.")
    return 0


def run_integration_concurrency(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        admin.set_concurrency_limit(args.consumer_key, args.slots)
    print(f"Integration {args.consumer_key} has {_allocation(args.slots)}.")
    return 0


def _allocation(slots: int | None) -> str:
    if slots is None:
        return "no allocation (it shares the unallocated slots)"
    return f"{slots} concurrency slot{'' if slots == 1 else 's'} of its own"


def run_integration_client_id(args: argparse.Namespace) -> int:
    client_id = args.client_id or None  # "" takes it away
    with credential_admin(args.config) as admin:
        admin.set_client(args.consumer_key, client_id)
    print(f"Integration {args.consumer_key} has client ID {client_id or '(none)'}.")
    return 0


def _state_command(state: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with credential_admin(args.config) as admin:
            admin.set_state(args.consumer_key, state)
        print(f"Integration {args.consumer_key} {state}.")
        return 0

    return run


def run_integration_remove(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        removed = admin.remove_integration(args.consumer_key)
    print(f"Integration {args.consumer_key} removed, with its {removed} token(s).")
    return 0


# --- token ----------------------------------------------------------------------------------------


def run_token_issue(args: argparse.Namespace) -> int:
    expires_at = time.time() + args.expires_in if args.expires_in else None
    with credential_admin(args.config) as admin:
        token = admin.issue_token(
            args.consumer_key,
            entity=args.entity,
            role=args.role,
            account=args.account,
            expires_at=expires_at,
        )
    print(
        f"Token issued for integration {token.consumer_key}, entity {token.entity!r}, "
        f"role {token.role!r}."
    )
    print(f"token id:     {token.token_id}")
    print(f"token secret: {token.token_secret}")
    _print_secret_notice("token secret")
    return 0


def run_token_list(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        found = admin.tokens(args.consumer_key)
    rows = [
        [
            t.token_id,
            t.state,
            t.consumer_key,
            t.entity,
            t.role,
            t.issued_by,
            _when(t.created_at),
            _when(t.last_used),
        ]
        for t in found
    ]
    header = [
        "TOKEN ID", "STATE", "CONSUMER KEY", "ENTITY", "ROLE", "ISSUED BY", "CREATED", "LAST USED",
    ]  # fmt: skip
    _table(header, rows)
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        admin.revoke_token(args.token_id)
    print(f"Token {args.token_id} revoked.")
    return 0


def _token_state_command(state: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with credential_admin(args.config) as admin:
            admin.set_token_state(args.token_id, state)
        print(f"Token {args.token_id} {state}.")
        return 0

    return run


# --- certificate: OAuth 2.0 client-credentials mappings ------------------------------------------


def run_certificate_add(args: argparse.Namespace) -> int:
    pem = _read_text(args.certificate, "--certificate")
    if args.toml:
        return _print_certificate_toml(args, pem)
    with credential_admin(args.config) as admin:
        mapping = admin.add_certificate(
            args.client_id, args.entity, args.role, pem, certificate_id=args.certificate_id
        )
    print(
        f"Certificate mapped to client {mapping.client_id} (integration {mapping.consumer_key}),"
        f" entity {mapping.entity!r}, role {mapping.role!r}."
    )
    print(f"certificate id: {mapping.certificate_id}")
    print(f"key:            {mapping.kind}")
    print(f"valid:          {_when(mapping.not_before)} to {_when(mapping.not_after)}")
    _warn_if_expiring(mapping.not_after, time.time())
    return 0


def _print_certificate_toml(args: argparse.Namespace, pem: str) -> int:
    """A `[[certificates]]` table for a settings file, once the certificate passes the rules
    the database applies to the certificate itself (the count of active ones is the
    operator's to keep, at five at most)."""
    info = _checked_certificate(pem, time.time())
    certificate_id = args.certificate_id or secrets.token_urlsafe(32)
    lines = [
        f"# {info.kind}, valid {_when(info.not_before)} to {_when(info.not_after)}",
        f"# SHA-256 fingerprint {info.fingerprint}",
        "[[certificates]]",
        f"certificate_id = {_toml_string(certificate_id)}",
        f"client_id = {_toml_string(args.client_id)}",
        f"entity = {_toml_string(args.entity)}",
        f"role = {_toml_string(args.role)}",
        # A literal multi-line string: PEM holds no quote, and nothing to escape.
        f"certificate = '''\n{pem.strip()}\n'''",
    ]
    print("\n".join(lines))
    _warn_if_expiring(info.not_after, time.time())
    return 0


def _checked_certificate(pem: str, now: float) -> Any:
    """What `CredentialAdmin.add_certificate` checks of the certificate itself, here without
    the database's packages (a guard with settings alone may lack them)."""
    with needs_extra("tba-guard certificate"):
        from ..core.jose import JoseError, mapping_certificate
    try:
        return mapping_certificate(pem, now)
    except JoseError as exc:
        raise AdminError(f"--certificate: {exc}") from None


def _warn_if_expiring(not_after: float, now: float) -> None:
    note = _expiry_note(not_after, now)
    if note:
        print(f"WARNING: {note}: map its successor before then.", file=sys.stderr)


def _expiry_note(not_after: float, now: float) -> str:
    """Empty unless the certificate expires within EXPIRY_WARNING_SECONDS, or has expired."""
    left = not_after - now
    if left <= 0:
        return "the certificate has expired"
    if left <= EXPIRY_WARNING_SECONDS:
        return f"the certificate expires in {left / DAY:.0f} days, on {_when(not_after)}"
    return ""


#: A mapping as `certificate list` shows it, from the database or the settings.
Listed = tuple[str, str, str, str, str, str, float]


def run_certificate_list(args: argparse.Namespace) -> int:
    settings, _, _ = resolve_settings(args.config)
    rows: list[Listed]
    if settings.credential_store == "settings":
        rows = _settings_certificates(settings, args.client_id)
    else:
        with credential_admin(args.config) as admin:
            found = admin.certificates(args.client_id)
        rows = [
            (m.certificate_id, m.state, m.client_id or "-", m.entity, m.role, m.kind, m.not_after)
            for m in found
        ]
    now = time.time()
    shown = []
    for row in rows:
        note = _expiry_note(row[6], now) if row[1] == "active" else ""
        shown.append([*row[:6], _when(row[6]), f"! {note}" if note else ""])
    header = ["CERTIFICATE ID", "STATE", "CLIENT ID", "ENTITY", "ROLE", "KEY", "EXPIRES", "NOTE"]
    _table(header, shown)
    return 0


def _settings_certificates(settings: GuardSettings, client_id: str | None) -> list[Listed]:
    """The settings' `[[certificates]]`, as the database's listing shows its own."""
    with needs_extra("tba-guard certificate list"):
        from ..core.jose import JoseError, read_certificate
    rows: list[Listed] = []
    for mapping in settings.certificates:
        if client_id is not None and mapping.client_id != client_id:
            continue
        try:
            info = read_certificate(mapping.certificate)
            kind, not_after = info.kind, info.not_after
        except JoseError:
            kind, not_after = "unreadable", 0.0
        rows.append(
            (
                mapping.certificate_id,
                mapping.state,
                mapping.client_id,
                mapping.entity,
                mapping.role,
                kind,
                not_after,
            )
        )
    return rows


def run_certificate_revoke(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        admin.revoke_certificate(args.certificate_id)
    print(f"Certificate {args.certificate_id} revoked (kept, to name the reason it is refused).")
    return 0


# --- oauth2 keygen: the guard's own signing key --------------------------------------------------


def run_oauth2_keygen(args: argparse.Namespace) -> int:
    with needs_extra("tba-guard oauth2 keygen"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        from ..core.jose import key_id
    private: Any
    if args.curve:
        curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
        private = ec.generate_private_key(curves[args.curve])
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=args.rsa_bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(args.output, pem)
    print(f"kid: {key_id(private.public_key())}")
    print(f"Private key written to {args.output} (mode 0600). In the settings' [oauth2] table:")
    print(f"  oauth2_signing_keys_file = {_toml_string(args.output)}")
    print("To rotate: the new key first, the old one after it for an hour, then drop the old.")
    return 0


def _write_private(path: str, data: bytes) -> None:
    """Created with mode 0600 from the start (never readable by others, not even briefly);
    an existing file is refused, not overwritten."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AdminError(f"--output {path}: the file exists; refusing to overwrite it") from None
    except OSError as exc:
        raise AdminError(f"--output {path}: {exc.strerror or exc}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


# --- usage ---------------------------------------------------------------------------------------


def run_usage(args: argparse.Namespace) -> int:
    since = time.time() - args.since * DAY if args.since is not None else None
    with credential_admin(args.config) as admin:
        found = admin.usage(since)
        names = {i.consumer_key: i.name for i in admin.integrations()}
    rows = [
        [
            u.consumer_key,
            names.get(u.consumer_key, "(removed)"),
            u.token_id,
            u.scheme,
            str(u.count),
            _when(u.last_used),
        ]
        for u in found
    ]
    header = ["CONSUMER KEY", "INTEGRATION", "TOKEN/CERTIFICATE ID", "SCHEME", "COUNT", "LAST USED"]
    _table(header, rows)
    return 0


# --- helpers -------------------------------------------------------------------------------------


def _read_text(path: str, option: str) -> str:
    try:
        with open(path, encoding="ascii") as file:
            return file.read()
    except OSError as exc:
        raise AdminError(f"{option} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AdminError(f"{option} {path}: not PEM text") from None


def _toml_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- the parsers ----------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def _schemes(text: str) -> tuple[str, ...]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    if not names or not names <= set(SCHEME_NAMES):
        raise argparse.ArgumentTypeError(f"expected tba, oauth2 or tba,oauth2, got {text!r}")
    return tuple(name for name in SCHEME_NAMES if name in names)


def _slots(text: str) -> int | None:
    """An allocation's slots, 1 or more; `none` takes the allocation away."""
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected slots >= 1 or none, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected slots >= 1 or none, got {text}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected days, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected days >= 0, got {text}")
    return value


def add_commands(commands: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """`db`, `integration`, `token`, `certificate`, `oauth2` and `usage`, with their
    subcommands, on the CLI's parser."""

    def command(group: Any, name: str, run: Callable[[argparse.Namespace], int], help: str) -> Any:
        parser = group.add_parser(name, help=help, description=help)
        add_config(parser)
        parser.set_defaults(run=run)
        return parser

    db = commands.add_parser("db", help="the credential database: create, migrate, import, rekey")
    db_commands = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(db_commands, "upgrade", run_db_upgrade, "create or migrate the tables to the latest")
    command(db_commands, "current", run_db_current, "show the database's schema revision")
    imported = command(
        db_commands, "import", run_db_import, "copy a settings file's integrations and tokens in"
    )
    imported.add_argument("file", metavar="FILE", help="the TOML file to copy from")
    command(db_commands, "rekey", run_db_rekey, "seal every secret again under the first key")
    keygen = db_commands.add_parser("keygen", help="print a new random credential_key")
    keygen.set_defaults(run=run_db_keygen)

    integration = commands.add_parser("integration", help="add, list, block, enable, remove")
    actions = integration.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = command(actions, "add", run_integration_add, "add an integration; prints its secret once")
    add.add_argument("--name", required=True, help="what the integration is called")
    add.add_argument("--consumer-key", metavar="K", help="default: 64 random hex characters")
    add.add_argument(
        "--authorization-flow", action="store_true", help="it may use the three-step flow"
    )
    add.add_argument("--callback-url", metavar="URL", help="the flow's callback URL")
    add.add_argument("--blocked", action="store_true", help="add it blocked")
    add.add_argument("--client-id", metavar="CID", help="its OAuth 2.0 client ID")
    add.add_argument(
        "--schemes",
        type=_schemes,
        default=SCHEME_NAMES,
        metavar="tba,oauth2|tba|oauth2",
        help="what it may sign with (default: both)",
    )
    add.add_argument(
        "--concurrency",
        type=_slots,
        metavar="N",
        help="slots of the account's concurrency limit allocated to it alone (default: none)",
    )
    command(actions, "list", run_integration_list, "list integrations (never a secret)")
    schemes = command(
        actions, "schemes", run_integration_schemes, "set what an integration may sign with"
    )
    schemes.add_argument("consumer_key", metavar="CONSUMER_KEY")
    schemes.add_argument("schemes", type=_schemes, metavar="tba|oauth2|tba,oauth2")
    concurrency = command(
        actions,
        "concurrency",
        run_integration_concurrency,
        "allocate an integration slots of its own (governance)",
    )
    concurrency.add_argument("consumer_key", metavar="CONSUMER_KEY")
    concurrency.add_argument(
        "slots", type=_slots, metavar="N|none", help="1 or more; none takes the allocation away"
    )
    client = command(
        actions, "client-id", run_integration_client_id, "set an integration's OAuth 2.0 client ID"
    )
    client.add_argument("consumer_key", metavar="CONSUMER_KEY")
    client.add_argument("client_id", metavar="CLIENT_ID", help='"" takes it away')
    for name, state in (("block", "blocked"), ("enable", "enabled")):
        changed = command(actions, name, _state_command(state), f"{name} an integration")
        changed.add_argument("consumer_key", metavar="CONSUMER_KEY")
    removed = command(actions, "remove", run_integration_remove, "delete it and its tokens")
    removed.add_argument("consumer_key", metavar="CONSUMER_KEY")

    token = commands.add_parser(
        "token", help="issue, list, deactivate, activate, revoke access tokens"
    )
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = command(
        token_actions, "issue", run_token_issue, "issue a token; prints its secret once"
    )
    issue.add_argument("--consumer-key", required=True, metavar="K", help="its integration")
    issue.add_argument("--entity", required=True, help="the user (NetSuite entity) it acts as")
    issue.add_argument("--role", required=True, help="the role it acts with")
    issue.add_argument("--account", metavar="REALM", help="pin it to one account (realm)")
    issue.add_argument("--expires-in", type=_seconds, metavar="SECONDS", help="default: never")
    listed = command(token_actions, "list", run_token_list, "list tokens (never a secret)")
    listed.add_argument("--consumer-key", metavar="K", help="only this integration's")
    revoke = command(token_actions, "revoke", run_token_revoke, "revoke a token, at once")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    for name, state, what in (
        ("deactivate", "inactive", "switch a token off; activate turns it back on"),
        ("activate", "active", "switch an inactive token back on (never a revoked one)"),
    ):
        switched = command(token_actions, name, _token_state_command(state), what)
        switched.add_argument("token_id", metavar="TOKEN_ID")
    _add_oauth2_commands(commands, command)


def _add_oauth2_commands(commands: Any, command: Callable[..., Any]) -> None:
    certificate = commands.add_parser(
        "certificate", help="OAuth 2.0 mappings: add, list, revoke certificates"
    )
    actions = certificate.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = command(actions, "add", run_certificate_add, "map a certificate to an integration")
    add.add_argument("--client-id", required=True, metavar="CID", help="its integration's")
    add.add_argument("--entity", required=True, help="the user (NetSuite entity) it acts as")
    add.add_argument("--role", required=True, help="the role it acts with")
    add.add_argument("--certificate", required=True, metavar="FILE.pem", help="X.509, PEM")
    add.add_argument("--certificate-id", metavar="ID", help="default: 43 random characters")
    add.add_argument(
        "--toml",
        action="store_true",
        help="print a [[certificates]] table for a settings file instead (no database)",
    )
    listed = command(
        actions, "list", run_certificate_list, "list mappings (the database's or the settings')"
    )
    listed.add_argument("--client-id", metavar="CID", help="only this integration's")
    revoke = command(actions, "revoke", run_certificate_revoke, "revoke a mapping, at once")
    revoke.add_argument("certificate_id", metavar="CERTIFICATE_ID")

    oauth2 = commands.add_parser("oauth2", help="the guard's own OAuth 2.0 signing keys")
    oauth2_actions = oauth2.add_subparsers(dest="action", required=True, metavar="ACTION")
    keygen = oauth2_actions.add_parser(
        "keygen", help="write a new private key (RSA 3072 unless told); prints its kid"
    )
    kind = keygen.add_mutually_exclusive_group()
    kind.add_argument("--curve", choices=("P-256", "P-384", "P-521"), help="an EC key instead")
    kind.add_argument("--rsa-bits", type=int, choices=(3072, 4096), default=3072)
    keygen.add_argument("--output", required=True, metavar="FILE", help="created with mode 0600")
    keygen.set_defaults(run=run_oauth2_keygen)

    usage = command(
        commands, "usage", run_usage, "requests per integration, token and scheme (the database)"
    )
    usage.add_argument(
        "--since", type=_days, metavar="DAYS", help="only what was used in the last DAYS days"
    )


#: Errors the CLI reports in one line (exit 2), with `SettingsError`.
ERRORS = (AdminError, SettingsError)
