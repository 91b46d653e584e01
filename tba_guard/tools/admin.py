"""`tba-guard db|integration|token`: the credential database from the command line.

The database and its key come from the settings, found as for every command (`--config`,
`$TBA_GUARD_CONFIG`, `TBA_GUARD_*`). A new consumer secret or token secret is printed once, by
the command that creates it, and never again; every change goes to the audit log (stderr,
unless the application configured logging), with identifiers only.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..core.settings import GuardSettings, SettingsError
from ..stores import DATABASE_STORE, needs_extra
from .demo import load_settings, resolve_settings


class AdminError(Exception):
    """A command that cannot be carried out: one line to stderr, exit 2."""


@contextmanager
def credential_admin(config: str | None) -> Iterator[Any]:
    """A `CredentialAdmin` on the database the settings name; its errors as `AdminError`."""
    settings = database_settings(config)
    with needs_extra(DATABASE_STORE):
        from sqlalchemy.exc import SQLAlchemyError

        from ..stores.database import connect
        from ..stores.database.admin import CredentialAdmin, NotFound
        from ..stores.database.sealing import Sealer, SealError

        engine = connect.create(settings.credential_store, timeout=10.0)  # imports the driver
    try:
        yield CredentialAdmin(engine, Sealer(settings.credential_key))
    except (NotFound, SealError) as exc:
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
    for name in result.added:
        print(f"added   {name}")
    for name in result.skipped:
        print(f"skipped {name} (already in the database, left as it is)")
    print(f"{len(result.added)} added, {len(result.skipped)} skipped.")
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
        )
    print(f"Integration {integration.name!r} added ({integration.state}).")
    print(f"consumer key:    {integration.consumer_key}")
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
            "yes" if i.authorization_flow else "no",
            str(i.tokens),
            _when(i.created_at),
            i.name,
        ]
        for i in found
    ]
    _table(["CONSUMER KEY", "STATE", "FLOW", "TOKENS", "CREATED", "NAME"], rows)
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
        [t.token_id, t.state, t.consumer_key, t.entity, t.role, t.issued_by, _when(t.created_at)]
        for t in found
    ]
    _table(["TOKEN ID", "STATE", "CONSUMER KEY", "ENTITY", "ROLE", "ISSUED BY", "CREATED"], rows)
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    with credential_admin(args.config) as admin:
        admin.revoke_token(args.token_id)
    print(f"Token {args.token_id} revoked.")
    return 0


# --- the parsers ----------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def add_commands(commands: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """`db`, `integration` and `token`, with their subcommands, on the CLI's parser."""

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
    command(actions, "list", run_integration_list, "list integrations (never a secret)")
    for name, state in (("block", "blocked"), ("enable", "enabled")):
        changed = command(actions, name, _state_command(state), f"{name} an integration")
        changed.add_argument("consumer_key", metavar="CONSUMER_KEY")
    removed = command(actions, "remove", run_integration_remove, "delete it and its tokens")
    removed.add_argument("consumer_key", metavar="CONSUMER_KEY")

    token = commands.add_parser("token", help="issue, list, revoke access tokens")
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


#: Errors the CLI reports in one line (exit 2), with `SettingsError`.
ERRORS = (AdminError, SettingsError)
