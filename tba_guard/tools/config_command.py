"""`tba-guard config show|check`: the effective settings and where each came from.

`show` prints every setting under its concern's table, with its source (default, file,
environment), secrets redacted; `check` reports every bad key of every layer at once and exits
2, so a deployment can test its file and environment before it starts a server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ..core.records import Integration, Token, User
from ..core.settings import CONCERNS, SECRET_SETTINGS, SettingsError
from ..stores.urls import redact_url
from .demo import resolve_layers

EXIT_OK, EXIT_BAD_SETTINGS = 0, 2
_URL_SETTINGS = frozenset({"replay_store", "token_store", "credential_store"})


def shown(name: str, value: Any) -> str:
    """A setting's value as the TOML file would spell it; secrets and records' secrets never."""
    if name in _URL_SETTINGS:
        return json.dumps(redact_url(value))
    if name in SECRET_SETTINGS:
        if not value:
            return "(not set)"
        return f"*** ({len(value)} keys)" if isinstance(value, tuple) and len(value) > 1 else "***"
    if value is None:
        return "(not set)"
    if isinstance(value, tuple) and value and isinstance(value[0], Integration | Token | User):
        return json.dumps([_record_name(record) for record in value])
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value)


def _record_name(record: Integration | Token | User) -> str:
    """The record's identifier only: a consumer key, a token ID, an entity."""
    if isinstance(record, Integration):
        return record.consumer_key
    if isinstance(record, Token):
        return record.token_id
    return record.entity


def run_show(args: argparse.Namespace) -> int:
    layered = resolve_layers(args.config)
    settings = layered.settings
    lines = [(name, shown(name, getattr(settings, name))) for name in CONCERNS]
    width = max(len(f"{name} = {value}") for name, value in lines)
    table = ""
    for name, value in lines:
        if CONCERNS[name] != table:  # under the file's table for its concern
            table = CONCERNS[name]
            print(f"[{table}]")
        print(f"{name} = {value}".ljust(width), f"  # {layered.sources[name]}")
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    try:
        layered = resolve_layers(args.config)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"tba-guard config check: {problem}", file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in the settings.", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    given = [source for source in layered.sources.values() if source != "default"]
    print(f"The settings are valid ({len(given)} of {len(layered.sources)} set, the rest default).")
    return EXIT_OK


def add_commands(commands: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    """`config show` and `config check` on the CLI's parser."""
    config = commands.add_parser("config", help="show or check the effective settings")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show", help="every setting, its value and its source (secrets hidden)"
    )
    add_config(show)
    show.set_defaults(run=run_show)
    check = actions.add_parser("check", help="name every bad key at once; exit 2 if any")
    add_config(check)
    check.set_defaults(run=run_check)
