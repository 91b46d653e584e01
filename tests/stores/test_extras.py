"""A store whose optional package is missing says which extra installs it, in one line.

The package is made unimportable in this process (`None` in `sys.modules`, as the import
system's own way to refuse one), and the store's module forgotten so that it is imported anew.
"""

from __future__ import annotations

import base64
import os
import sys

import pytest

from tba_guard import GuardSettings
from tba_guard.stores import (
    MissingExtra,
    extra_missing,
    needs_extra,
    replay_store_for,
    require_extras,
)


def without(monkeypatch: pytest.MonkeyPatch, package: str, *modules: str) -> None:
    """`package` cannot be imported, and `modules` (which import it) are imported afresh."""
    monkeypatch.setitem(sys.modules, package, None)
    for name in list(sys.modules):
        if name == package or name.startswith(package + "."):
            monkeypatch.setitem(sys.modules, name, None)
    for module in modules:
        monkeypatch.delitem(sys.modules, module, raising=False)
        parent, _, name = module.rpartition(".")
        if parent in sys.modules:  # `from . import name` takes the package's attribute first
            monkeypatch.delattr(sys.modules[parent], name, raising=False)


def test_a_missing_package_becomes_one_line_naming_its_extra() -> None:
    with pytest.raises(MissingExtra) as caught, needs_extra("the thing"):
        raise ModuleNotFoundError("No module named 'sqlalchemy'", name="sqlalchemy")
    assert str(caught.value) == (
        "the thing needs the database extra: pip install 'tba-guard[database]'"
    )
    assert caught.value.extra == "database"
    assert caught.value.__suppress_context__  # no chained traceback


def test_an_import_error_of_another_package_passes_unchanged() -> None:
    broken = ImportError("something else", name="numpy")
    with pytest.raises(ImportError) as caught, needs_extra("the thing"):
        raise broken
    assert caught.value is broken


def test_a_missing_extra_is_not_wrapped_again() -> None:
    inner = MissingExtra("the inner thing", "redis")
    with pytest.raises(MissingExtra) as caught, needs_extra("the outer thing"):
        raise inner
    assert caught.value is inner


def test_the_extra_is_found_down_the_chain_of_causes() -> None:
    outer = ImportError("the Redis stores need the redis package")
    outer.__cause__ = ModuleNotFoundError("No module named 'redis'", name="redis")
    assert extra_missing(outer) == "redis"
    assert extra_missing(ValueError("unrelated")) is None


def test_a_redis_replay_store_without_redis_py_names_the_redis_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "redis", "tba_guard.stores.redis", "tba_guard.stores.redis_replay")
    settings = GuardSettings(replay_store="redis://127.0.0.1:6379/0")
    with pytest.raises(MissingExtra, match=r"pip install 'tba-guard\[redis\]'"):
        replay_store_for(settings)
    with pytest.raises(MissingExtra, match=r"^replay_store"):
        require_extras(settings)


def test_a_redis_token_store_without_redis_py_names_the_redis_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "redis", "tba_guard.stores.redis", "tba_guard.stores.redis_tokens")
    with pytest.raises(MissingExtra, match=r"^token_store"):
        require_extras(GuardSettings(token_store="redis://127.0.0.1:6379/0"))


def test_a_credential_database_without_sqlalchemy_names_the_database_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "sqlalchemy", "tba_guard.stores.database.store")
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    settings = GuardSettings(credential_store="sqlite:///unused.db", credential_key=(key,))
    with pytest.raises(MissingExtra, match=r"^the credential database .*\[database\]'"):
        require_extras(settings)


def test_settings_that_need_no_extra_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "redis")
    without(monkeypatch, "sqlalchemy")
    require_extras(GuardSettings())  # memory stores and the settings' own credentials
