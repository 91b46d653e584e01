"""One settings object, built in code, from `TBA_GUARD_*` environment variables, a TOML file, or
all three layered (`GuardSettings.load`: the file, the environment over it, the code over both).

The sources share one table of names (`_FIELDS`); every value goes through the same validation,
and unknown names and bad values are one `SettingsError` naming every key at once.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from .errors import ErrorDetail
from .records import SCHEME_NAMES, Brownout, Certificate, Integration, Token, User
from .signature import SIGNATURE_METHODS

ENV_PREFIX = "TBA_GUARD_"
#: The settings file the layers start from when no `config` is given.
CONFIG_ENV = "TBA_GUARD_CONFIG"
#: Seconds a database credential store caches lookups unless `credential_cache_ttl` says.
DATABASE_CACHE_TTL = 5.0
#: Shortest consumer or token secret accepted: a placeholder ("…", "changeme") or a short
#: secret is guessable offline from one signed request, since HMAC signs with it.
MIN_SECRET_LENGTH = 16
#: OAuth 2.0 scopes, as NetSuite names them.
OAUTH2_SCOPES = ("restlets", "rest_webservices")
#: Variables with the prefix that are not settings (they steer the test suite or the CLI).
_ENV_NOT_SETTINGS = frozenset(
    {
        "TBA_GUARD_REQUIRE_REDIS",
        "TBA_GUARD_REQUIRE_BROWSER",
        "TBA_GUARD_REQUIRE_DOCS",
        "TBA_GUARD_REQUIRE_POSTGRES",
        "TBA_GUARD_REQUIRE_TOOLS",  # the test suite: openssl, curl and bash must be there
        "TBA_GUARD_REQUIRE_REDIS_TLS",  # the test suite: redis-server must serve TLS
        "TBA_GUARD_CONFIG",
        "TBA_GUARD_ALLOW_PER_PROCESS_STORES",  # tba_guard.asgi.flow: several workers anyway
        "TBA_GUARD_BUILD",  # the test suite: which build it runs on
        "TBA_GUARD_PURE_PYTHON",  # setup.py: skip the compiled build
        "TBA_GUARD_TEST_REDIS_URL",  # the test suite's Redis
    }
)


def env_has_settings(environ: Mapping[str, str] | None = None) -> bool:
    """Whether any `TBA_GUARD_*` variable is a setting: the CLI then reads the environment
    rather than its embedded demo settings."""
    environ = os.environ if environ is None else environ
    return any(name.startswith(ENV_PREFIX) and name not in _ENV_NOT_SETTINGS for name in environ)


class SettingsError(ValueError):
    """Bad or unknown settings; each problem names its key, and all are reported at once."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# --- validation, each declared beside its setting in GuardSettings ---------------------------


@dataclass(frozen=True)
class _Field:
    name: str
    parse: Callable[[str, Any], Any]  # from TOML/JSON-like data to the attribute's type
    from_text: Callable[[str, str], Any]  # from an environment variable's text
    check: Callable[[str, Any], Any]  # on the final value, whatever the source


def _fail(key: str, expected: str, value: Any) -> SettingsError:
    shown = value if not isinstance(value, str) else repr(value)
    return SettingsError(f"{key}: expected {expected}, got {shown}")


def _int(minimum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(key, f"an integer >= {minimum}", value)
        return value

    return check


def _number(minimum: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise _fail(key, f"a number >= {minimum}", value)
        return float(value)

    return check


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _optional_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _fail(key, "a non-empty string", value)
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(key, "a non-empty string", value)
    return value


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in allowed:
            raise _fail(key, " or ".join(repr(a) for a in allowed), value)
        return str(value)

    return check


def _memory_or_redis(key: str, value: Any) -> str:
    """`memory`, or a Redis URL; the password in one is never echoed."""
    if value == "memory" or (
        isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))
    ):
        return str(value)
    raise _fail(key, "'memory' or a redis:// URL", _scheme_only(value))


def _credential_store(key: str, value: Any) -> str:
    """`settings`, or a database URL; the password in one is never echoed."""
    if value == "settings":
        return "settings"
    if isinstance(value, str) and value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return value
    raise _fail(key, "'settings', 'sqlite:///path' or a postgresql:// URL", _scheme_only(value))


def _scheme_only(value: Any) -> Any:
    """What a bad store setting may show of itself: a URL's scheme, never its password."""
    if isinstance(value, str) and ":" in value:
        return value.partition(":")[0] + ":…"
    return value


def _optional_number(minimum: float) -> Callable[[str, Any], float | None]:
    number = _number(minimum)

    def check(key: str, value: Any) -> float | None:
        return None if value is None else number(key, value)

    return check


def _fernet_keys(key: str, value: Any) -> tuple[str, ...]:
    """One key or several, newest first: each the 44 characters of 32 url-safe base64 bytes.
    Several in one text are separated by commas or lines (a secret file). Never echoes a key."""
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, list | tuple):
        raise _fail(key, "a key or a list of keys", type(value).__name__)
    for index, item in enumerate(value):
        try:
            raw = base64.urlsafe_b64decode(item.encode("ascii")) if isinstance(item, str) else b""
        except (ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            raise SettingsError(
                f"{key}[{index}]: expected a key of 32 url-safe base64 bytes "
                "(generate one: tba-guard db keygen)"
            )
    return tuple(value)


def _public_url(key: str, value: Any) -> str | None:
    value = _optional_str(key, value)
    if value is not None and not value.startswith(("http://", "https://")):
        raise _fail(key, "an http:// or https:// URL", value)
    return value.rstrip("/") if value is not None else None


def _str_tuple(check_item: Callable[[str, Any], str]) -> Callable[[str, Any], tuple[str, ...]]:
    def check(key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _fail(key, "a list of strings", value)
        return tuple(check_item(f"{key}[{i}]", item) for i, item in enumerate(value))

    return check


def _network(key: str, value: Any) -> str:
    """An IP address or network (`10.0.0.0/8`), or `*` for every peer."""
    if value == "*":
        return "*"
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except (TypeError, ValueError):
        raise _fail(key, "an IP address, a network such as 10.0.0.0/8, or '*'", value) from None


def _host_pattern(key: str, value: Any) -> str:
    """A host name (any case, no port), `*.example.com` for its subdomains, or `*`."""
    if not isinstance(value, str) or not value:
        raise _fail(key, "a host name", value)
    name = value[2:] if value.startswith("*.") else value
    if value != "*" and (not name or any(c in name for c in "*/:@ \t")):
        raise _fail(key, "a host name without port, '*.example.com' or '*'", value)
    return value.lower()


def _signature_method(key: str, value: Any) -> str:
    if value not in SIGNATURE_METHODS:
        raise _fail(key, "one of " + ", ".join(sorted(SIGNATURE_METHODS)), value)
    return str(value)


def _path(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise _fail(key, "a path starting with /", value)
    return value


def _records(
    cls: type[Any], check_one: Callable[[str, Any], None]
) -> Callable[[str, Any], tuple[Any, ...]]:
    names = {f.name for f in dataclasses.fields(cls)}
    defaults = {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }

    def parse(key: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(key, "a list of tables", type(value).__name__)
        records = []
        for index, item in enumerate(value):
            where = f"{key}[{index}]"
            if isinstance(item, cls):
                records.append(item)
                continue
            if not isinstance(item, Mapping):
                raise _fail(where, "a table", type(item).__name__)
            unknown = set(item) - names
            if unknown:
                raise SettingsError(f"{where}: unknown key {sorted(unknown)[0]!r}")
            absent = required - set(item)
            if absent:
                raise SettingsError(f"{where}: missing key {sorted(absent)[0]!r}")
            # Checked before it is built: the compiled build's records insist on their field
            # types, and a TypeError would not name the key.
            check_one(where, SimpleNamespace(**{**defaults, **item}))
            # TOML and JSON arrays are lists; the records' sequences (a user's roles) are tuples.
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}
            records.append(cls(**fields))
        return tuple(records)

    return parse


def _check_integration(key: str, value: Integration) -> None:
    for name in ("consumer_key", "consumer_secret"):
        if not isinstance(getattr(value, name), str) or not getattr(value, name):
            raise SettingsError(f"{key}.{name}: expected a non-empty string")
    _check_secret(f"{key}.consumer_secret", value.consumer_secret)
    if value.state not in ("enabled", "blocked"):
        raise _fail(f"{key}.state", "'enabled' or 'blocked'", value.state)
    if not isinstance(value.name, str):
        raise _fail(f"{key}.name", "a string", value.name)
    _bool(f"{key}.authorization_flow", value.authorization_flow)
    _optional_str(f"{key}.callback_url", value.callback_url)
    _optional_str(f"{key}.client_id", value.client_id)
    schemes = _str_tuple(_choice(*SCHEME_NAMES))(f"{key}.schemes", value.schemes)
    if not schemes:
        raise SettingsError(f"{key}.schemes: expected 'tba', 'oauth2' or both")
    if value.concurrency_limit is not None:
        _int(1)(f"{key}.concurrency_limit", value.concurrency_limit)


def _check_certificate(key: str, value: Certificate) -> None:
    for name in ("certificate_id", "client_id", "certificate"):
        _str(f"{key}.{name}", getattr(value, name))
    for name in ("entity", "role"):
        if not isinstance(getattr(value, name), str):
            raise _fail(f"{key}.{name}", "a string", getattr(value, name))
    if "-----BEGIN CERTIFICATE-----" not in value.certificate:
        raise SettingsError(f"{key}.certificate: expected a PEM X.509 certificate")
    if value.state not in ("active", "revoked"):
        raise _fail(f"{key}.state", "'active' or 'revoked'", value.state)


def _epoch(key: str, value: Any) -> float:
    """Epoch seconds, an RFC 3339 date and time with its offset, or a TOML offset datetime."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _fail(key, "a date and time like 2027-03-01T14:00:00Z", value) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SettingsError(f"{key}: expected a date and time with its offset (Z or +hh:mm)")
        return value.timestamp()
    return _number(0)(key, value)


def _brownouts(key: str, value: Any) -> tuple[Brownout, ...]:
    if not isinstance(value, list | tuple):
        raise _fail(key, "a list of tables", type(value).__name__)
    windows = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if isinstance(item, Brownout):
            item = {"start": item.start, "length": item.length, "consumer_key": item.consumer_key}
        if not isinstance(item, Mapping):
            raise _fail(where, "a table", type(item).__name__)
        unknown = set(item) - {"start", "length", "consumer_key"}
        if unknown:
            raise SettingsError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if "start" not in item or "length" not in item:
            raise SettingsError(f"{where}: expected start and length")
        windows.append(
            Brownout(
                _epoch(f"{where}.start", item["start"]),
                _number(1)(f"{where}.length", item["length"]),
                _optional_str(f"{where}.consumer_key", item.get("consumer_key")),
            )
        )
    return tuple(windows)


def _private_keys(key: str, value: Any) -> tuple[str, ...]:
    """PEM private keys, newest first: a list, or one text holding one or more (a secret file).
    Only the shape is checked here; the guard loads them. Never echoes a key."""
    if isinstance(value, str):
        value = _PEM_KEY.findall(value) or [value]
    if not isinstance(value, list | tuple):
        raise _fail(key, "a PEM private key or a list of them", type(value).__name__)
    keys = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or "PRIVATE KEY-----" not in item:
            raise SettingsError(
                f"{key}[{index}]: expected a PEM private key (generate one: "
                "tba-guard oauth2 keygen)"
            )
        keys.append(item.strip() + "\n")
    return tuple(keys)


_PEM_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S
)


def _route_scope(key: str, value: Any) -> str:
    text = _str(key, value)
    prefix, equals, scope = text.partition("=")
    if not equals or not prefix.startswith("/") or scope not in OAUTH2_SCOPES:
        raise _fail(key, "'/path/prefix=restlets' or '…=rest_webservices'", value)
    return text


def _check_token(key: str, value: Token) -> None:
    for name in ("token_id", "token_secret", "consumer_key"):
        if not isinstance(getattr(value, name), str) or not getattr(value, name):
            raise SettingsError(f"{key}.{name}: expected a non-empty string")
    _check_secret(f"{key}.token_secret", value.token_secret)
    for name in ("entity", "role"):
        if not isinstance(getattr(value, name), str):
            raise _fail(f"{key}.{name}", "a string", getattr(value, name))
    _bool(f"{key}.active", value.active)
    _bool(f"{key}.revoked", value.revoked)
    if value.state not in ("active", "inactive", "revoked"):
        raise _fail(f"{key}.state", "'active', 'inactive' or 'revoked'", value.state)
    expires_at = value.expires_at
    if expires_at is not None and (
        isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
    ):
        raise _fail(f"{key}.expires_at", "a number of epoch seconds", expires_at)
    _optional_str(f"{key}.account", value.account)


def _check_secret(key: str, secret: str) -> None:
    """Never echoes the value: the message names the key and the rule only."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"{key}: expected at least {MIN_SECRET_LENGTH} characters, got {len(secret)} "
            "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def _check_user(key: str, value: User) -> None:
    for name in ("entity", "name"):
        _str(f"{key}.{name}", getattr(value, name))
    if not isinstance(value.password, str):
        raise _fail(f"{key}.password", "a string", type(value.password).__name__)
    _str_tuple(_str)(f"{key}.roles", value.roles)
    _bool(f"{key}.active", value.active)


def _session_secret(key: str, value: Any) -> str | None:
    secret = _optional_str(key, value)
    if secret is not None and len(secret) < 16:
        raise SettingsError(f"{key}: expected at least {MIN_SECRET_LENGTH} characters")
    return secret


def _checked_records(
    check_one: Callable[[str, Any], None],
) -> Callable[[str, Any], tuple[Any, ...]]:
    def check(key: str, value: Any) -> tuple[Any, ...]:
        records = tuple(value)
        for index, item in enumerate(records):
            check_one(f"{key}[{index}]", item)
        return records

    return check


def _text_int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _fail(key, "an integer", raw) from None


def _text_float(key: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _fail(key, "a number", raw) from None


def _text_bool(key: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise _fail(key, "true or false", raw)


def _text_list(key: str, raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        return list(_text_json(key, raw))
    return [item.strip() for item in raw.split(",") if item.strip()]


def _text_json(key: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise _fail(key, "JSON", "text that does not parse") from None


def _text_str(key: str, raw: str) -> str:
    return raw


def _same(key: str, value: Any) -> Any:
    return value


def record_setting(
    cls: type[Any], check_one: Callable[[str, Any], None], *, doc: str, secret: bool = False
) -> Any:
    """A setting that lists records (`[[integrations]]`, `[[tokens]]`, `[[users]]`), each
    checked by `check_one`: tables in TOML, a JSON array in the environment."""
    return setting(
        (),
        _checked_records(check_one),
        _text_json,
        _records(cls, check_one),
        doc=doc,
        secret=secret,
    )


def list_setting(
    check_item: Callable[[str, Any], str], *, doc: str, default: tuple[str, ...] = ()
) -> Any:
    """A setting that lists strings, each checked by `check_item`: an array in TOML,
    comma-separated or a JSON array in the environment."""
    return setting(default, _str_tuple(check_item), _text_list, doc=doc)


def setting(
    default: Any,
    check: Callable[[str, Any], Any],
    from_text: Callable[[str, str], Any] = _text_str,
    parse: Callable[[str, Any], Any] = _same,
    *,
    doc: str,
    secret: bool = False,
) -> Any:
    """A field of a settings group with its validation beside it: `check` on the final value,
    `from_text` from an environment variable, `parse` from TOML-like data; `doc` is its line in
    docs/configuration.md; a `secret` one is left out of `repr`."""
    spec = {"check": check, "from_text": from_text, "parse": parse}
    return field(default=default, repr=not secret, metadata={"spec": spec, "doc": doc})


class _Validated:
    """Every settings group checks its fields on construction, alone or inside `GuardSettings`,
    and reports every bad one at once; `_consistent` adds checks across a group's fields."""

    #: The group's table in the settings file, and its heading in `config show` and the docs.
    table: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]  # each group is a dataclass

    def __post_init__(self) -> None:
        problems: list[str] = []
        for spec in dataclasses.fields(self):
            check = _FIELDS[spec.name]
            try:
                value = check.check(spec.name, check.parse(spec.name, getattr(self, spec.name)))
            except SettingsError as exc:
                problems.extend(exc.problems)
                continue
            object.__setattr__(self, spec.name, value)
        bad = {problem.partition(":")[0].partition("[")[0] for problem in problems}
        for group in type(self).__mro__:
            consistent = group.__dict__.get("_consistent")
            if consistent is not None:
                problems.extend(consistent(self, bad))
        if problems:
            raise SettingsError(*problems)


@dataclass(frozen=True)
class ProtocolSettings(_Validated):
    """What a signed request must be: NetSuite's rules N7, N9, N10 of docs/netsuite-behaviour.md."""

    table: ClassVar[str] = "protocol"

    realm: str | None = setting(
        None,
        _optional_str,
        doc="The account ID. A request whose `realm` differs (compared exactly) is refused; "
        "one without a realm is accepted.",
    )
    timestamp_tolerance: int = setting(
        300, _int(1), _text_int, doc="Seconds a timestamp may be off, either way."
    )
    signature_methods: tuple[str, ...] = list_setting(
        _signature_method,
        default=("HMAC-SHA256",),
        doc="Any of " + ", ".join(f"`{name}`" for name in sorted(SIGNATURE_METHODS)) + ".",
    )
    nonce_min_length: int = setting(6, _int(1), _text_int, doc="Shortest nonce accepted.")
    nonce_max_length: int = setting(64, _int(1), _text_int, doc="Longest nonce accepted.")
    feature_enabled: bool = setting(
        True, _bool, _text_bool, doc="The account-wide TBA switch: off, every request is refused."
    )
    error_detail: ErrorDetail = setting(
        "code",
        _choice("code", "opaque"),
        doc='`"opaque"` hides the code from the wire (see '
        "[opaque mode](checks-and-errors.md#error-catalog)).",
    )
    development_hints: bool = setting(
        False,
        _bool,
        _text_bool,
        doc="Add a one-line `hint` (reason, fix, and for `InvalidSignature` the server's base "
        "string) to error responses in code mode. Development only: never in production.",
    )

    def _consistent(self, bad: set[str]) -> list[str]:
        if not bad & {"nonce_min_length", "nonce_max_length"} and (
            self.nonce_min_length > self.nonce_max_length
        ):
            return ["nonce_min_length: larger than nonce_max_length"]
        return []


@dataclass(frozen=True)
class RequestSettings(_Validated):
    """How much of a request the guard reads, and which requests it guards at all."""

    table: ClassVar[str] = "request"

    public_url: str | None = setting(
        None,
        _public_url,
        doc="Scheme, host and path prefix the clients sign, when a proxy stands in front.",
    )
    trusted_proxies: tuple[str, ...] = list_setting(
        _network,
        doc="Addresses or networks (`10.0.0.0/8`; `*` for every peer) whose "
        "`X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For` are believed, and "
        "handed to the application. From any other peer these headers are ignored.",
    )
    allowed_hosts: tuple[str, ...] = list_setting(
        _host_pattern,
        doc="Host names (any case, no port; `*.example.com` for subdomains) a guarded request "
        "may name in `Host`; any other is `HostNotAllowed` before any check. Empty: any host "
        "(`tba-guard serve` warns when neither this nor `public_url` is set).",
    )
    exempt_paths: tuple[str, ...] = list_setting(
        _path,
        doc="Paths not guarded; one ending in `/` covers everything below it. Matched on the "
        "path the router sees; a path with `.`/`..` or empty segments, a backslash, or an "
        "encoded slash, backslash or dot is never exempt.",
    )
    header_max_length: int = setting(
        4096, _int(64), _text_int, doc="Longest `Authorization` header read."
    )
    header_max_parameters: int = setting(
        32, _int(8), _text_int, doc="Most parameters in the `Authorization` header."
    )
    body_max_bytes: int = setting(
        1_048_576,
        _int(0),
        _text_int,
        doc="Largest form body (or body-hashed body) read; larger is 413.",
    )
    body_timeout: float = setting(
        10.0, _number(0.001), _text_float, doc="Seconds to wait for such a body; slower is 408."
    )
    body_buffer_max_bytes: int = setting(
        64 * 1_048_576,
        _int(0),
        _text_int,
        doc="Bytes of such bodies held at once by all requests of one process; past it a "
        "request gets 503 `RequestBuffersFull` with `Retry-After`.",
    )


@dataclass(frozen=True)
class ReplaySettings(_Validated):
    """Where used nonces are remembered (docs/replay-protection.md)."""

    table: ClassVar[str] = "replay"

    replay_store: str = setting(
        "memory",
        _memory_or_redis,
        doc="`memory` (one process), or a `redis://`, `rediss://` (TLS) or `unix://` URL "
        "shared by every worker.",
        secret=True,  # a URL may hold a password
    )
    replay_store_max_entries: int = setting(
        1_000_000, _int(1), _text_int, doc="Bound of the in-process replay store."
    )
    replay_store_key_prefix: str = setting(
        "tba_guard:nonce:", _str, doc="Prefix of the Redis replay store's keys."
    )
    replay_store_pool_size: int = setting(
        32,
        _int(1),
        _text_int,
        doc="Redis connections per worker process; a call waits for a free one within "
        "`replay_store_timeout`.",
    )
    replay_store_timeout: float = setting(
        0.25,
        _number(0.001),
        _text_float,
        doc="Seconds one Redis call may take in all (free connection, connect, answer); past "
        "it the request gets the 503.",
    )


@dataclass(frozen=True)
class CredentialSettings(_Validated):
    """Where integrations and tokens live (docs/credential-database.md), and how long a lookup
    is trusted."""

    table: ClassVar[str] = "credentials"

    credential_store: str = setting(
        "settings",
        _credential_store,
        doc="Where integrations and tokens live: `settings` (the `[[integrations]]` and "
        "`[[tokens]]` below), or a database, `sqlite:///path` or `postgresql://…`.",
        secret=True,  # a URL may hold a password
    )
    credential_key: tuple[str, ...] = setting(
        (),
        _fernet_keys,
        doc="Fernet keys sealing the database's secrets, newest first, kept outside the "
        "database; required with one (`tba-guard db keygen`).",
        secret=True,
    )
    credential_store_timeout: float = setting(
        1.0, _number(0.001), _text_float, doc="Seconds a database lookup may take; then 503."
    )
    credential_store_pool_size: int = setting(
        4, _int(1), _text_int, doc="Database connections (and threads) per process."
    )
    credential_cache_ttl: float | None = setting(
        None,
        _optional_number(0),
        _text_float,
        doc="Seconds a lookup is cached, found or not (0: off): the longest a revocation or a "
        "block takes to bite. Not set: 5 with a database, 0 with the settings' own lists.",
    )
    credential_cache_size: int = setting(
        10_000, _int(1), _text_int, doc="Ids cached per kind, found and not found alike."
    )
    integrations: tuple[Integration, ...] = record_setting(
        Integration,
        _check_integration,
        doc="`[[integrations]]`: `name`, `consumer_key`, `consumer_secret`, `state` "
        "(`enabled`/`blocked`), `authorization_flow`, `callback_url`.",
    )
    tokens: tuple[Token, ...] = record_setting(
        Token,
        _check_token,
        doc="`[[tokens]]`: `token_id`, `token_secret`, `consumer_key`, `entity`, `role`, "
        "`active` (its entity and role usable), and optionally `state` (`active`, `inactive` "
        "or `revoked`; `revoked = true` says the last too), `expires_at` (epoch seconds), "
        "`account` (the realm a token belongs to, when one store serves several accounts).",
        secret=True,
    )
    certificates: tuple[Certificate, ...] = record_setting(
        Certificate,
        _check_certificate,
        doc="`[[certificates]]`: OAuth 2.0 client-credentials mappings, `certificate_id` (the "
        "assertions' `kid`), `client_id` (an integration's), `entity`, `role`, `certificate` "
        "(PEM), `state` (`active`/`revoked`); `tba-guard certificate add` writes one.",
    )
    usage_flush_interval: float = setting(
        60.0,
        _number(0),
        _text_float,
        doc="Seconds between writes of the per-integration usage counts (`tba-guard usage`) "
        "to the credential database; 0 writes after every request.",
    )

    def _consistent(self, bad: set[str]) -> list[str]:
        if not bad & {"credential_store", "credential_key"} and (
            self.credential_store != "settings" and not self.credential_key
        ):
            return [
                "credential_key: required with a database credential_store, to seal its "
                "secrets (generate one: tba-guard db keygen)"
            ]
        return []

    @property
    def effective_credential_cache_ttl(self) -> float:
        """`credential_cache_ttl`, or its default for the credential store in use."""
        if self.credential_cache_ttl is not None:
            return self.credential_cache_ttl
        return 0.0 if self.credential_store == "settings" else DATABASE_CACHE_TTL


@dataclass(frozen=True)
class FlowSettings(_Validated):
    """The three-step authorization flow (docs/authorization-flow.md): where its steps live
    (rule N20), what it stores, who may consent."""

    table: ClassVar[str] = "flow"

    request_token_path: str = setting(
        "/rest/requesttoken", _path, doc="Where step one (the request token) lives."
    )
    authorize_path: str = setting(
        "/app/login/secure/authorizetoken.nl", _path, doc="Where step two (consent) lives."
    )
    access_token_path: str = setting(
        "/rest/accesstoken", _path, doc="Where step three (the access token) lives."
    )
    request_token_ttl: int = setting(
        600, _int(1), _text_int, doc="Seconds a request token waits for steps two and three."
    )
    request_token_max_per_integration: int = setting(
        1000,
        _int(1),
        _text_int,
        doc="Live (unexpired, not yet exchanged) request tokens one integration may hold; "
        "beyond it step one answers `RequestTokenLimit` to that integration only, so a flood "
        "from one leaked consumer secret never fills the store.",
    )
    token_store: str = setting(
        "memory",
        _memory_or_redis,
        doc="Where request and access tokens live: `memory` (one process), or a `redis://` "
        "URL shared by every worker.",
        secret=True,  # a URL may hold a password
    )
    token_store_key_prefix: str = setting(
        "tba_guard:flow:", _str, doc="Prefix of the token store's Redis keys."
    )
    token_store_pool_size: int = setting(
        32, _int(1), _text_int, doc="The Redis token store's connections per worker process."
    )
    token_store_timeout: float = setting(
        1.0,
        _number(0.001),
        _text_float,
        doc="Seconds one token-store call may take in all (its scripts do more than the "
        "replay store's one-key commands); past it the step answers 503.",
    )
    session_secret: str | None = setting(
        None,
        _session_secret,
        doc="Key of the consent page's session and CSRF cookies (16+ characters); not set, a "
        "random one per process, so set it when several processes serve the page.",
        secret=True,
    )
    users: tuple[User, ...] = record_setting(
        User,
        _check_user,
        doc="`[[users]]`: `entity`, `name`, `password`, `roles`, `active`, for the built-in "
        "sign-in.",
        secret=True,
    )
    sign_in_max_failures: int = setting(
        5,
        _int(1),
        _text_int,
        doc="Failed built-in sign-ins per name within `sign_in_failure_window` before that "
        "name gets 429 until the window passes.",
    )
    sign_in_max_failures_per_address: int = setting(
        20,
        _int(1),
        _text_int,
        doc="The same, per client address.",
    )
    sign_in_failure_window: int = setting(
        900, _int(1), _text_int, doc="Seconds over which failed sign-ins are counted."
    )


@dataclass(frozen=True)
class OAuth2Settings(_Validated):
    """OAuth 2.0 beside TBA (docs/oauth2.md): the token endpoint, the access tokens the guard
    signs, the scope each route needs, and TBA's brownouts. Off until a signing key is set."""

    table: ClassVar[str] = "oauth2"

    oauth2_signing_keys: tuple[str, ...] = setting(
        (),
        _private_keys,
        _same,
        doc="PEM private keys (RSA 3072+ or EC P-256/384/521) that sign access tokens, newest "
        "first: the first signs, all verify, so a new key goes in front and the old one leaves "
        "an hour later. Set, OAuth 2.0 is on (`tba-guard oauth2 keygen`).",
        secret=True,
    )
    oauth2_signing_algorithm: str = setting(
        "PS256",
        _choice("PS256", "PS384", "PS512"),
        doc="How an RSA key signs; an EC key signs with its curve's (ES256, ES384, ES512).",
    )
    oauth2_token_path: str = setting(
        "/services/rest/auth/oauth2/v1/token",
        _path,
        doc="Where the token endpoint lives; an assertion's `aud` is its URL.",
    )
    oauth2_issuer: str = setting(
        "tba-guard", _str, doc="The access tokens' `iss`: set it to the service's URL."
    )
    oauth2_audience: str | None = setting(
        None,
        _optional_str,
        doc="The access tokens' `aud`; not set, the `realm` (else `tba-guard`).",
    )
    oauth2_access_token_ttl: int = setting(
        3600, _int(60), _text_int, doc="Seconds an access token lives (at most 3600)."
    )
    oauth2_route_scopes: tuple[str, ...] = list_setting(
        _route_scope,
        default=("/app/site/hosting/restlet.nl=restlets", "/services/rest/=rest_webservices"),
        doc="`prefix=scope`: the scope a bearer token needs on paths under `prefix` (the "
        "longest prefix wins); a guarded path under none is refused with "
        "`insufficient_scope`.",
    )
    oauth2_token_cache_size: int = setting(
        10_000,
        _int(1),
        _text_int,
        doc="Verified access tokens remembered per process, each until its `exp` at most.",
    )
    brownouts: tuple[Brownout, ...] = setting(
        (),
        _brownouts,
        _text_json,
        doc="`[[brownouts]]`: `start` (a date and time with offset, or epoch seconds), "
        "`length` (seconds), optionally `consumer_key`: a window in which TBA is refused "
        "(`TBABrownout`) for that integration, or for all.",
    )

    def _consistent(self, bad: set[str]) -> list[str]:
        if "oauth2_access_token_ttl" not in bad and self.oauth2_access_token_ttl > 3600:
            return ["oauth2_access_token_ttl: at most 3600 (NetSuite's 60 minutes)"]
        return []

    @property
    def oauth2_enabled(self) -> bool:
        """Whether the guard issues and accepts OAuth 2.0 tokens: it has a key to sign with."""
        return bool(self.oauth2_signing_keys)


def _allocation(key: str, value: Any) -> str:
    text = _str(key, value)
    consumer_key, equals, slots = text.rpartition("=")
    if not equals or not consumer_key or not slots.isdigit() or int(slots) < 1:
        raise _fail(key, "'consumer_key=slots' (slots at least 1)", value)
    return text


@dataclass(frozen=True)
class GovernanceSettings(_Validated):
    """Concurrency governance as NetSuite's (docs/governance.md): requests in flight through the
    application per account, with slots allocated to integrations. Off while the limit is 0."""

    table: ClassVar[str] = "governance"

    governance_limit: int = setting(
        0,
        _int(0),
        _text_int,
        doc="Requests the account serves at once (NetSuite: 15 for Tier 1, plus 10 per "
        "SuiteCloud Plus licence; 5 for a developer account); 0 turns governance off.",
    )
    governance_allocations: tuple[str, ...] = list_setting(
        _allocation,
        doc="`consumer_key=slots`: slots reserved for one integration, which it alone uses; "
        "the other integrations share what is left, at least 1.",
    )
    governance_store: str = setting(
        "memory",
        _memory_or_redis,
        doc="Where the slots are counted: `memory` (one process) or a Redis URL shared by "
        "every worker and host.",
        secret=True,  # a URL may hold a password
    )
    governance_key_prefix: str = setting(
        "tba_guard:governance:", _str, doc="Prefix of the Redis governance keys."
    )
    governance_lease: float = setting(
        30.0,
        _number(1),
        _text_float,
        doc="Seconds a request's slot is held without renewal: a worker renews its leases "
        "every third of it, so a dead worker's slots come free within this.",
    )
    governance_retry_after: int = setting(
        1, _int(1), _text_int, doc="The `Retry-After` seconds of a refusal over the limit."
    )

    def _consistent(self, bad: set[str]) -> list[str]:
        if bad & {"governance_limit", "governance_allocations"} or not self.governance_limit:
            return []
        allocated = sum(int(a.rpartition("=")[2]) for a in self.governance_allocations)
        if allocated > self.governance_limit - 1:
            return [
                f"governance_allocations: {allocated} slots allocated of "
                f"governance_limit {self.governance_limit}; at least 1 must stay unallocated"
            ]
        return []

    @property
    def governance_enabled(self) -> bool:
        return self.governance_limit > 0


@dataclass(frozen=True)
class ObservabilitySettings(_Validated):
    """Prometheus metrics and OpenTelemetry spans (docs/metrics.md), both off by default."""

    table: ClassVar[str] = "metrics"

    metrics_path: str | None = setting(
        None,
        _optional_str,
        doc="Where the guard serves Prometheus metrics (`/metrics`), unauthenticated: serve "
        "it on a private network only. Not set, no metrics are kept.",
    )
    metrics_integration_cap: int = setting(
        100,
        _int(1),
        _text_int,
        doc="Integrations with labels of their own; the ones past it are counted as `other`.",
    )
    tracing: bool = setting(
        False,
        _bool,
        _text_bool,
        doc="An OpenTelemetry span around each verification, through the application's "
        "tracer provider (the `tracing` extra).",
    )


#: The concerns, in the order the settings file, `config show` and the docs list them.
GROUPS: tuple[type[_Validated], ...] = (
    ProtocolSettings,
    RequestSettings,
    ReplaySettings,
    CredentialSettings,
    FlowSettings,
    OAuth2Settings,
    GovernanceSettings,
    ObservabilitySettings,
)


@dataclass(frozen=True)
class GuardSettings(
    ObservabilitySettings,
    GovernanceSettings,
    OAuth2Settings,
    FlowSettings,
    CredentialSettings,
    ReplaySettings,
    RequestSettings,
    ProtocolSettings,
):
    """Everything the guard can be told: each concern's group at once, under the same flat
    names. A component that needs one concern takes its group (a `ReplaySettings`), and is
    given this. Defaults follow NetSuite's behaviour (docs/netsuite-behaviour.md)."""

    table: ClassVar[str] = "guard"

    def replace(self, **changes: Any) -> GuardSettings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "settings") -> GuardSettings:
        """Build from a plain mapping with the TOML file's names (`[guard]` keys flattened,
        plus `integrations` and `tokens` lists of tables); `<secret>_file` keys are read."""
        layer = Layer(source)
        layer.take(data)
        return layer.settings(cls)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> GuardSettings:
        """The file alone: no environment, no defaults but the settings' own."""
        return toml_layer(path).settings(cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GuardSettings:
        """`TBA_GUARD_<NAME>` for each setting; lists are comma-separated or JSON,
        `TBA_GUARD_INTEGRATIONS`/`TBA_GUARD_TOKENS` are JSON arrays of tables."""
        return env_layer(os.environ if environ is None else environ).settings(cls)

    @classmethod
    def load(
        cls,
        config: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> GuardSettings:
        """Settings layered as deployments need them: the file (`config`, else
        `$TBA_GUARD_CONFIG`), every `TBA_GUARD_*` variable over it, then `arguments`."""
        return load_layers(config, environ=environ, arguments=arguments).settings


# --- layers: file, environment, arguments ------------------------------------------------------

#: Settings that may hold a secret: each may also be read from a file, `<name>_file`, as Docker
#: and Kubernetes mount secrets. A URL's password is the secret of a store setting.
SECRET_SETTINGS = frozenset(
    {
        "credential_key",
        "session_secret",
        "replay_store",
        "token_store",
        "governance_store",
        "credential_store",
        "oauth2_signing_keys",
    }
)
_FILE_SUFFIX = "_file"


class Layer:
    """One source's values (a file, the environment, the code's arguments), and where each
    came from; unknown keys and unreadable secret files are collected, not raised at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.problems: list[str] = []

    def take(self, data: Mapping[str, Any], *, names: Mapping[str, str] | None = None) -> None:
        """Add `data`; `names` gives how each key was spelled in the source (an env variable)."""
        for key, value in data.items():
            spelled = names[key] if names else key
            if key.endswith(_FILE_SUFFIX) and key[: -len(_FILE_SUFFIX)] in SECRET_SETTINGS:
                self._take_secret_file(key[: -len(_FILE_SUFFIX)], value, spelled, data)
            elif key in _FIELDS:
                self.values[key] = value
                self.origins[key] = f"{self.source} ({spelled})" if names else self.source
            else:
                self.problems.append(
                    f"{spelled}: unknown setting"
                    if names
                    else f"{self.source}: unknown key {key!r}"
                )

    def _take_secret_file(
        self, name: str, path: Any, spelled: str, data: Mapping[str, Any]
    ) -> None:
        if name in data:
            self.problems.append(f"{spelled}: give {name} or {name}{_FILE_SUFFIX}, not both")
            return
        if not isinstance(path, str | os.PathLike) or not str(path):
            self.problems.append(f"{spelled}: expected the path of a file")
            return
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            self.problems.append(f"{spelled}: cannot read {str(path)!r}: {reason}")
            return
        # One value, as a secret file holds it: a trailing newline is not part of it.
        self.values[name] = _FIELDS[name].from_text(spelled, text.rstrip("\r\n"))
        self.origins[name] = f"{self.source} ({spelled} = {str(path)!r})"

    def settings(self, cls: type[GuardSettings] | None = None) -> GuardSettings:
        """The settings these values make over the defaults; every problem at once."""
        return _built(cls or GuardSettings, self.values, self.problems)


def _built(
    cls: type[GuardSettings], values: Mapping[str, Any], problems: list[str]
) -> GuardSettings:
    try:
        settings = cls(**values)
    except SettingsError as exc:
        raise SettingsError(*problems, *exc.problems) from None
    if problems:
        raise SettingsError(*problems)
    return settings


def toml_layer(path: str | os.PathLike[str]) -> Layer:
    """The values of a settings file: a table per concern (`[protocol]`, `[request]`,
    `[replay]`, `[credentials]`, `[flow]`) or all of them in `[guard]`, and the records'
    `[[integrations]]`, `[[tokens]]` and `[[users]]`. The names are the settings' own."""
    where = os.fspath(path)
    layer = Layer(f"file {where}")
    try:
        with Path(path).open("rb") as file:
            document = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    data: dict[str, Any] = {}
    for section, content in document.items():
        if section in _RECORD_TABLES:
            data[section] = content
        elif section in _TABLES and isinstance(content, dict):
            for key, value in content.items():
                problem = _misplaced(section, key)
                if problem is None and key in data:
                    problem = f"{section}.{key}: given in two tables"
                if problem is not None:
                    layer.problems.append(problem)
                else:
                    data[key] = value
        else:
            layer.problems.append(f"{where}: unknown section {section!r}")
    layer.take(data)
    return layer


def _misplaced(section: str, key: str) -> str | None:
    """Why `key` may not stand in `[section]`, or None: a record needs its own array of
    tables, and a concern's table holds only that concern's settings."""
    name = key.removesuffix(_FILE_SUFFIX)
    if name in _RECORD_TABLES:
        return f"{section}.{key}: use a [[{name}]] table"
    owner = CONCERNS.get(name)
    if section == GuardSettings.table or owner is None or owner == section:
        return None  # an unknown name is the layer's to report, with the others
    return f"{section}.{key}: belongs in [{owner}]"


_RECORD_TABLES = ("integrations", "tokens", "users", "certificates", "brownouts")
_TABLES = frozenset({GuardSettings.table, *(group.table for group in GROUPS)})


def env_layer(environ: Mapping[str, str]) -> Layer:
    """The `TBA_GUARD_*` variables that are settings, each parsed from its text."""
    layer = Layer("environment")
    data: dict[str, Any] = {}
    names: dict[str, str] = {}
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in _ENV_NOT_SETTINGS:
            continue
        key = variable[len(ENV_PREFIX) :].lower()
        names[key] = variable
        spec = _FIELDS.get(key)
        try:
            data[key] = spec.from_text(variable, raw) if spec is not None else raw
        except SettingsError as exc:
            layer.problems.extend(exc.problems)
    layer.take(data, names=names)
    return layer


@dataclass(frozen=True, slots=True)
class LayeredSettings:
    """The effective settings, and for each setting the source that gave it (`default`,
    `file …`, `environment (TBA_GUARD_…)`, `argument`)."""

    settings: GuardSettings
    sources: dict[str, str]
    config: str | None  # the settings file read, if any


def load_layers(
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> LayeredSettings:
    """The file (`config`, else `$TBA_GUARD_CONFIG`), then the environment, then `arguments`:
    a later layer's value wins, key by key. Every problem of every layer is raised at once."""
    environ = os.environ if environ is None else environ
    path = os.fspath(config) if config is not None else environ.get(CONFIG_ENV) or None
    layers = [toml_layer(path)] if path is not None else []
    layers.append(env_layer(environ))
    given = Layer("argument")
    given.take(arguments or {})
    layers.append(given)
    values: dict[str, Any] = {}
    sources = {name: "default" for name in _FIELDS}
    problems: list[str] = []
    for layer in layers:
        values.update(layer.values)
        sources.update(layer.origins)
        problems.extend(layer.problems)
    return LayeredSettings(_built(GuardSettings, values, problems), sources, path)


#: Each setting's validation, read from its declaration.
_FIELDS: dict[str, _Field] = {
    spec.name: _Field(spec.name, **spec.metadata["spec"])
    for spec in dataclasses.fields(GuardSettings)
}
#: Each setting's concern (protocol, request, replay_store, credential_store, flow), in order.
CONCERNS: dict[str, str] = {
    spec.name: group.table for group in GROUPS for spec in dataclasses.fields(group)
}
