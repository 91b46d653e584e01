"""The `tba-guard` command: `serve` (the demo service), `sign` and `explain`; and, for the
credential database, `db`, `integration`, `token`, `certificate` and `usage`, and
`oauth2 keygen` (tools/admin.py).

Usage and configuration errors print one line naming the problem and exit with status 2,
never a traceback, and so does a command or setting whose extra is not installed (the line names
the `pip install`); `explain` exits 1 when the request would be rejected. No subcommand prints
a secret unless asked: `sign` prints a signature, which is safe to show, and signs PLAINTEXT
(whose signature *is* the secrets) only with `--print-secrets`. Output into a pipe closed early
(`tba-guard explain ... | head`) ends quietly, as other command-line tools do.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shlex
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from ..asgi.flow import WORKERS_ENV
from ..core.records import Integration, Token
from ..core.request import FORM_CONTENT_TYPE
from ..core.settings import GuardSettings, SettingsError
from ..core.signature import PLAINTEXT
from ..stores import MissingExtra, needs_extra, require_extras
from .admin import AUDITED_COMMANDS, audit_to_stderr, credential_admin
from .admin import ERRORS as ADMIN_ERRORS
from .admin import add_commands as add_admin_commands
from .config_command import add_commands as add_config_commands
from .demo import CONFIG_ENV, PRECEDENCE, RESTLET_PATH, build_app, resolve_settings
from .sandbox import (
    DEVELOPER_ACCOUNT_LIMIT,
    SANDBOX_ACCOUNT,
    new_account,
    sandbox_settings,
    write_private,
)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
DEMO_FACTORY = "tba_guard.serving:create_app"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT")
#: How long `sign --oauth2`'s assertion lives: minutes are plenty for one POST (at most 60).
ASSERTION_SECONDS = 300
#: What `sign --oauth2` asks for unless told: both of NetSuite's scopes.
DEFAULT_SCOPE = "restlets,rest_webservices"
#: The options only `sign --oauth2` takes, by their argparse names.
_OAUTH2_OPTIONS = {
    "certificate_id": "--certificate-id",
    "key": "--key",
    "token_url": "--url",
    "client_id": "--client-id",
    "scope": "--scope",
}


class UsageError(Exception):
    """A mistake in the command line or the settings: one line to stderr, exit 2."""


# --- serve ------------------------------------------------------------------------------------


def check_workers(settings: GuardSettings, workers: int) -> None:
    """Several workers with the in-process replay store would each remember their own nonces,
    so a request replayed to another worker would be accepted: refuse to start."""
    if workers > 1 and settings.replay_store == "memory":
        raise UsageError(
            f"--workers {workers} needs a shared replay store: the in-process store "
            '(replay_store = "memory") lets a replay through on another worker. Configure a '
            'Redis replay store (replay_store = "redis://127.0.0.1:6379/0") or use --workers 1.'
        )
    if workers > 1 and settings.token_store == "memory":
        raise UsageError(
            f"--workers {workers} needs a shared token store: with the in-process store "
            '(token_store = "memory") a token issued by one worker is unknown to the others. '
            'Configure token_store = "redis://127.0.0.1:6379/0" or use --workers 1.'
        )
    if workers > 1 and settings.session_secret is None:
        raise UsageError(
            f"--workers {workers} needs a shared session_secret: each worker would otherwise "
            "sign consent-page cookies with its own random key. Set session_secret."
        )


def uvicorn_target(config: str | None, settings: GuardSettings, workers: int) -> tuple[Any, bool]:
    """What uvicorn should run, and whether it is a factory.

    One worker runs the app object; several need an import string that each worker process
    imports, so the factory reads the settings path from the environment.
    """
    if workers == 1:
        return build_app(settings), False
    if config is None:
        os.environ.pop(CONFIG_ENV, None)
    else:
        os.environ[CONFIG_ENV] = os.path.abspath(config)
    return DEMO_FACTORY, True


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus the audit log at INFO so the demo shows every decision."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tba_guard.audit"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    return config


def public_base(settings: GuardSettings, host: str, port: int) -> str:
    """The base URL a client on this machine signs: `public_url`, or the listening address."""
    if settings.public_url:
        return settings.public_url
    if host in ("", "0.0.0.0"):  # noqa: S104 - only turns "all interfaces" into loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def proxy_url_warning(settings: GuardSettings, host: str) -> str | None:
    """Listening beyond loopback with neither `public_url` nor `trusted_proxies`: a proxy in
    front (TLS ended there) makes the server build http:// where clients sign https://, and
    every request is InvalidSignature. Said once, at start-up."""
    if settings.public_url or settings.trusted_proxies:
        return None
    if host in ("localhost", "::1") or host.startswith("127."):
        return None
    return (
        f"listening on {host or 'every interface'} with neither public_url nor trusted_proxies "
        "set: behind a proxy the server verifies the URL it is reached by, not the one clients "
        "sign (https://public-host/...); set public_url, or trusted_proxies to the proxy's address"
    )


def first_request_lines(settings: GuardSettings, config: str | None, base: str) -> list[str]:
    """The exact shell lines for a first signed request and a first rejection (the same header
    again), naming keys but never a secret."""
    pair = _demo_credentials(settings)
    if pair is None:
        return ["(No enabled integration with an active token in the settings: nothing to sign.)"]
    integration, token = pair
    url = f"{base}{RESTLET_PATH}?script=1&deploy=1"
    sign = [*own_command(), "sign"]
    if config is not None:
        sign += ["--config", config]
    sign += ["--consumer-key", integration.consumer_key, "--token", token.token_id, "GET"]
    sign_line = " ".join(shlex.quote(part) for part in sign)
    return [
        "A first signed request, and a first rejection (the same header again), from a shell:",
        f"  URL={shlex.quote(url)}",
        f'  AUTH=$({sign_line} "$URL")',
        '  curl -i -H "Authorization: $AUTH" "$URL"   # 200: the verified identity',
        '  curl -i -H "Authorization: $AUTH" "$URL"   # 401: NonceUsed',
    ]


def own_command() -> list[str]:
    """How to run this very `tba-guard` from another shell: its name when it is the one on
    PATH, else its full path (a virtualenv that is not activated), else `python -m`."""
    invoked = sys.argv[0]
    if os.path.basename(invoked) == "tba-guard":
        full = os.path.abspath(invoked)
        found = shutil.which("tba-guard")
        return ["tba-guard"] if found and os.path.abspath(found) == full else [full]
    return [sys.executable, "-m", "tba_guard"]


def _demo_credentials(settings: GuardSettings) -> tuple[Integration, Token] | None:
    enabled = {i.consumer_key: i for i in settings.integrations if i.state == "enabled"}
    for token in settings.tokens:
        if token.consumer_key in enabled and token.active and token.current_state == "active":
            return enabled[token.consumer_key], token
    return None


def run_serve(args: argparse.Namespace) -> int:
    settings, path, where = resolve_settings(args.config)
    check_workers(settings, args.workers)
    # How the flow in each worker learns the count (spawned workers inherit the environment);
    # --workers, not a WEB_CONCURRENCY of the caller's, is what runs.
    os.environ[WORKERS_ENV] = str(args.workers)
    with needs_extra("serve"):
        import uvicorn
    require_extras(settings)  # here, not in each worker
    target, factory = uvicorn_target(path, settings, args.workers)
    base = public_base(settings, args.host, args.port)
    lines = [
        f"tba-guard demo service on http://{args.host}:{args.port}, settings from {where}",
        f"Guarded: {RESTLET_PATH} and /services/rest/{{path}}; not guarded: /healthz",
        f"Authorization flow: POST {settings.request_token_path}, "
        f"GET {settings.authorize_path}, POST {settings.access_token_path}",
        *first_request_lines(settings, path, base),
    ]
    print("\n".join(lines), flush=True)
    if not settings.public_url and not settings.allowed_hosts:
        print(
            "warning: neither public_url nor allowed_hosts is set, so a request signed for any "
            "host that names it in Host verifies here",
            file=sys.stderr,
            flush=True,
        )
    warning = proxy_url_warning(settings, args.host)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    options: dict[str, Any] = {
        "factory": factory,
        "http": "h11",
        "date_header": False,  # the app dates its responses (demo.DateHeader), once each
        # The guard applies `trusted_proxies` itself and hands the app what it believed;
        # uvicorn's own handling would trust 127.0.0.1 whatever the settings say.
        "proxy_headers": False,
        "log_config": log_config(),
    }
    if args.workers == 1:
        uvicorn.run(target, host=args.host, port=args.port, **options)
        return EXIT_OK
    # Our own supervisor: a listening socket per worker, so that keep-alive connections spread
    # over the workers, and with TCP_NODELAY (see supervisor.py and listener.py).
    from .supervisor import supervise, worker_listeners

    try:
        listeners = worker_listeners(args.host, args.port, args.workers)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        raise UsageError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    try:
        options |= {"app": target, "host": args.host, "port": args.port}
        return supervise(options, listeners, args.workers)
    finally:
        for listener in listeners:
            listener.close()


# --- sandbox ----------------------------------------------------------------------------------


def run_sandbox(args: argparse.Namespace) -> int:
    with needs_extra("sandbox"):
        import uvicorn
    base = public_base(GuardSettings(), args.host, args.port)
    sandbox = new_account(base, account=args.account, governance_limit=args.governance_limit)
    settings = sandbox_settings(sandbox, redis_url=args.redis)
    if args.credentials_file:
        write_private(args.credentials_file, sandbox.as_json() + "\n")
        print(f"sandbox {sandbox.account} on {base}, credentials in {args.credentials_file}")
    else:
        print(sandbox.as_json())
    sys.stdout.flush()
    uvicorn.run(
        build_app(settings),
        host=args.host,
        port=args.port,
        http="h11",
        date_header=False,  # the app dates its responses (demo.DateHeader)
        proxy_headers=False,
        log_config=log_config(),
    )
    return EXIT_OK


# --- sign -------------------------------------------------------------------------------------


def authorization_header(
    settings: GuardSettings,
    method: str,
    url: str,
    *,
    consumer_key: str,
    token_id: str | None = None,
    realm: str | None = None,
    body: str | None = None,
    content_type: str | None = None,
    print_secrets: bool = False,
) -> str:
    """An `Authorization` value signed by oauthlib's `Client`, the signer most Python clients
    use, with the first signature method of the settings and the secrets they hold. PLAINTEXT
    sends the secrets as the signature: it is skipped for the next method unless
    `print_secrets`, and refused when it is the only one.

    `realm` None means the configured realm; "" means none. A body without a content type is
    form-encoded (what `curl -d` sends), so its parameters are signed.
    """
    from oauthlib.oauth1 import Client

    verb = method.upper()
    if verb not in HTTP_METHODS:
        raise UsageError(f"METHOD {method!r}: expected one of {', '.join(HTTP_METHODS)}")
    integration = next((i for i in settings.integrations if i.consumer_key == consumer_key), None)
    if integration is None:
        raise UsageError(f"--consumer-key {consumer_key!r}: no such integration in the settings")
    token = None
    if token_id is not None:
        token = next((t for t in settings.tokens if t.token_id == token_id), None)
        if token is None:
            raise UsageError(f"--token {token_id!r}: no such token in the settings")
        if token.consumer_key != consumer_key:
            raise UsageError(
                f"--token {token_id!r} belongs to integration {token.consumer_key!r}, "
                f"not {consumer_key!r}"
            )
    headers = {}
    if body is not None or content_type is not None:
        headers["Content-Type"] = content_type or FORM_CONTENT_TYPE
    method_name = signing_method(settings, print_secrets=print_secrets)
    client = Client(
        integration.consumer_key,
        client_secret=integration.consumer_secret,
        resource_owner_key=token.token_id if token else None,
        resource_owner_secret=token.token_secret if token else None,
        signature_method=method_name,
        realm=(settings.realm if realm is None else realm) or None,
    )
    try:
        _, signed, _ = client.sign(url, http_method=cast(Any, verb), body=body, headers=headers)
    except ValueError as exc:
        raise UsageError(f"cannot sign this request: {exc}") from None
    return str(signed["Authorization"])


def signing_method(settings: GuardSettings, *, print_secrets: bool = False) -> str:
    """The first configured method whose signature is not the secrets themselves."""
    if print_secrets:
        return settings.signature_methods[0]
    for method in settings.signature_methods:
        if method != PLAINTEXT:
            return method
    raise UsageError(
        "the only configured signature method is PLAINTEXT, whose signature is the consumer "
        "and token secrets: pass --print-secrets to print them, or add an HMAC method"
    )


def run_sign(args: argparse.Namespace) -> int:
    if args.oauth2:
        return run_sign_oauth2(args)
    given = [option for name, option in _OAUTH2_OPTIONS.items() if getattr(args, name)]
    if given:
        raise UsageError(f"{given[0]} goes with --oauth2")
    if args.consumer_key is None or args.url is None:
        raise UsageError("give --consumer-key K [--token T] METHOD URL (or --oauth2 …)")
    settings = resolve_settings(args.config)[0]
    if settings.credential_store != "settings":
        settings = with_database_records(settings, args.config, args.consumer_key, args.token)
    print(
        authorization_header(
            settings,
            args.method,
            args.url,
            consumer_key=args.consumer_key,
            token_id=args.token,
            realm=args.realm,
            body=args.body,
            content_type=args.content_type,
            print_secrets=args.print_secrets,
        )
    )
    return EXIT_OK


def with_database_records(
    settings: GuardSettings, config: str | None, consumer_key: str, token_id: str | None
) -> GuardSettings:
    """The settings holding the integration and token to sign with, read from the database
    (their secrets opened here, never printed)."""
    with credential_admin(config) as admin:
        integration = admin.integration_with_secret(consumer_key)
        token = admin.token_with_secret(token_id) if token_id is not None else None
    return settings.replace(integrations=(integration,), tokens=(token,) if token else ())


# --- sign --oauth2: a client credentials grant with a JWT assertion ---------------------------


def run_sign_oauth2(args: argparse.Namespace) -> int:
    """Sign an assertion as a NetSuite M2M client does, POST it to the token endpoint, and
    print the access token as an `Authorization` value; a refusal's JSON goes to stderr."""
    if args.consumer_key or args.token or args.method or args.url:
        raise UsageError("--oauth2 takes --certificate-id, --key and --url, not a TBA request")
    for name in ("certificate_id", "key", "token_url"):
        if not getattr(args, name):
            raise UsageError(f"--oauth2 needs {_OAUTH2_OPTIONS[name]}")
    _check_http_url(args.token_url)
    with needs_extra("tba-guard sign --oauth2"):
        import jwt

        key, algorithm = _client_key(args.key)
    client_id = args.client_id or mapping_client_id(args.config, args.certificate_id)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "scope": args.scope or DEFAULT_SCOPE,
        "aud": args.token_url,
        "iat": now,
        "exp": now + ASSERTION_SECONDS,
        "jti": secrets.token_urlsafe(16),
    }
    headers = {"kid": args.certificate_id, "typ": "JWT"}
    assertion = jwt.encode(claims, key, algorithm=algorithm, headers=headers)
    status, answer = post_token_request(args.token_url, assertion)
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if status != 200 or not isinstance(token, str):
        print(json.dumps(answer), file=sys.stderr)
        return EXIT_REJECTED
    print(f"Bearer {token}")
    return EXIT_OK


def _check_http_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise UsageError(f"--url {url!r}: expected the token endpoint's http(s) URL")


def _client_key(path: str) -> tuple[Any, str]:
    """The private key in `path`, and the algorithm NetSuite has such a key sign with: PS256
    for RSA, ES256/384/512 by curve. The key's text is never shown, even when unreadable."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from ..core.jose import CURVE_ALGORITHMS

    try:
        with open(path, "rb") as file:
            key = serialization.load_pem_private_key(file.read(), password=None)
    except OSError as exc:
        raise UsageError(f"--key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise UsageError(f"--key {path}: not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "PS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in CURVE_ALGORITHMS:
        return key, CURVE_ALGORITHMS[key.curve.name]
    raise UsageError(f"--key {path}: expected an RSA or EC P-256/384/521 key")


def mapping_client_id(config: str | None, certificate_id: str) -> str:
    """The client ID of the mapping `certificate_id` names: in the settings' `[[certificates]]`,
    or the database's."""
    settings = resolve_settings(config)[0]
    if settings.credential_store == "settings":
        for mapping in settings.certificates:
            if mapping.certificate_id == certificate_id:
                return mapping.client_id
        raise UsageError(
            f"--certificate-id {certificate_id!r}: no such mapping in the settings "
            "(or pass --client-id)"
        )
    with credential_admin(config) as admin:
        client_id = admin.certificate(certificate_id).client_id
    if not client_id:
        raise UsageError(f"--certificate-id {certificate_id!r}: its integration has no client ID")
    return str(client_id)


def post_token_request(url: str, assertion: str) -> tuple[int, Any]:
    """POST the client credentials grant; the status and the JSON answered (or the text)."""
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked: http(s) only
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UsageError(f"--url {url}: no answer: {reason}") from None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {"status": status, "body": body.decode("utf-8", "replace")[:500]}


# --- explain ----------------------------------------------------------------------------------


def run_explain_command(args: argparse.Namespace) -> int:
    settings = resolve_settings(args.config)[0]
    from .explain import parse_raw_request, run_explain, run_explain_raw  # lazy: only here

    if args.raw is not None:
        try:
            raw = parse_raw_request(_raw_text(args), scheme=args.scheme)
        except ValueError as exc:
            raise UsageError(f"--raw {args.raw}: {exc}") from None
        lines, accepted = run_explain_raw(settings, raw, args.now)
        print("\n".join(lines))
        return EXIT_OK if accepted else EXIT_REJECTED
    header = args.header
    if header is None and _token_endpoint_post(settings, args.method, args.url):
        header = ""  # the token endpoint's request carries its assertion in the form
    if args.method is None or args.url is None or header is None:
        raise UsageError(
            "give METHOD URL --header VALUE (no --header for a POST to the OAuth 2.0 token "
            "endpoint), or the whole request with --raw FILE"
        )
    lines, accepted = run_explain(
        settings,
        args.method,
        args.url,
        header,
        args.body,
        args.now,
        content_type=args.content_type,
    )
    print("\n".join(lines))
    return EXIT_OK if accepted else EXIT_REJECTED


def _token_endpoint_post(settings: GuardSettings, method: str | None, url: str | None) -> bool:
    return (
        (method or "").upper() == "POST"
        and url is not None
        and urlsplit(url).path == settings.oauth2_token_path
    )


def _raw_text(args: argparse.Namespace) -> str:
    """The pasted request (a file, or standard input for `-`), checked to stand alone."""
    given = [args.method, args.url, args.header, args.content_type, args.body or None]
    if any(value is not None for value in given):
        raise UsageError("--raw holds the whole request: leave out METHOD, URL and the options")
    try:
        if args.raw == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.raw, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise UsageError(f"--raw {args.raw}: {exc.strerror or exc}") from None
    return data.decode("utf-8", "surrogateescape")


# --- the parser -------------------------------------------------------------------------------


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text}")
    return value


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (TOML, see the README); default: $TBA_GUARD_CONFIG, else the "
        "TBA_GUARD_* variables, else the embedded demo settings",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tba-guard",
        description="NetSuite-style OAuth 1.0 (TBA) request validation: demo service and tools.",
        epilog=PRECEDENCE,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the demo service behind the guard (uvicorn)")
    _add_config(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="worker processes (default 1); more than one needs a Redis replay store",
    )
    serve.set_defaults(run=run_serve)

    sandbox = commands.add_parser(
        "sandbox",
        help="run a NetSuite-like account with throw-away credentials, for client libraries' CI",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=_port, default=8000, help="port to bind (default 8000)")
    sandbox.add_argument(
        "--credentials-file",
        metavar="FILE",
        help="write the credentials (JSON) to FILE, readable by its owner only, not to stdout",
    )
    sandbox.add_argument(
        "--account", default=SANDBOX_ACCOUNT, help=f"the account ID (default {SANDBOX_ACCOUNT})"
    )
    sandbox.add_argument(
        "--governance-limit",
        type=_positive,
        default=DEVELOPER_ACCOUNT_LIMIT,
        metavar="N",
        help=f"requests in flight at once (default {DEVELOPER_ACCOUNT_LIMIT}: a developer account)",
    )
    sandbox.add_argument(
        "--redis", metavar="URL", help="count nonces and slots in this Redis (default: in process)"
    )
    sandbox.set_defaults(run=run_sandbox)

    sign = commands.add_parser(
        "sign",
        help="print a signed Authorization header value (TBA), or get one (--oauth2)",
        description="TBA: sign METHOD URL as --consumer-key (and --token). --oauth2: sign a "
        "client assertion with --key as --certificate-id's mapping, POST it to the token "
        "endpoint --url, and print 'Bearer <access token>'.",
    )
    _add_config(sign)
    sign.add_argument("--consumer-key", metavar="K", help="integration to sign as (TBA)")
    sign.add_argument("--token", metavar="T", help="token ID (omit for a request without token)")
    sign.add_argument(
        "--realm", metavar="R", help='realm to send (default: the configured one; "" for none)'
    )
    sign.add_argument("--body", metavar="B", help="request body to sign")
    sign.add_argument(
        "--content-type",
        metavar="CT",
        help=f"the body's content type (default {FORM_CONTENT_TYPE}, as curl -d sends)",
    )
    sign.add_argument(
        "--print-secrets",
        action="store_true",
        help="sign with PLAINTEXT when it is the first method, printing the secrets it sends",
    )
    sign.add_argument("method", metavar="METHOD", nargs="?")
    sign.add_argument("url", metavar="URL", nargs="?", help="the full URL the request goes to")
    oauth2 = sign.add_argument_group("OAuth 2.0 (client credentials with a JWT assertion)")
    oauth2.add_argument("--oauth2", action="store_true", help="get an OAuth 2.0 access token")
    oauth2.add_argument("--certificate-id", metavar="ID", help="the mapping (the assertion's kid)")
    oauth2.add_argument("--key", metavar="KEY.pem", help="the certificate's private key")
    oauth2.add_argument("--url", dest="token_url", metavar="URL", help="the token endpoint")
    oauth2.add_argument("--scope", metavar="S", help=f"default: {DEFAULT_SCOPE}")
    oauth2.add_argument(
        "--client-id", metavar="CID", help="default: the mapping's, from the settings or database"
    )
    sign.set_defaults(run=run_sign)

    explain = commands.add_parser(
        "explain", help="run every check on a request, without touching any replay store"
    )
    _add_config(explain)
    explain.add_argument("method", metavar="METHOD", nargs="?")
    explain.add_argument("url", metavar="URL", nargs="?")
    explain.add_argument("--header", metavar="VALUE", help="Authorization value")
    explain.add_argument(
        "--raw",
        metavar="FILE",
        help="the whole HTTP request as curl -v or a proxy log shows it ('-': standard input)",
    )
    explain.add_argument(
        "--scheme",
        choices=("https", "http"),
        default="https",
        help="with --raw: the scheme of a request line that gives only a path (default https)",
    )
    explain.add_argument("--body", default="", metavar="B", help="request body")
    explain.add_argument(
        "--content-type", metavar="CT", help="the body's content type (a form body is signed)"
    )
    explain.add_argument("--now", type=float, metavar="TS", help="server clock (epoch seconds)")
    explain.set_defaults(run=run_explain_command)
    add_admin_commands(commands, _add_config)
    add_config_commands(commands, _add_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    if args.command in AUDITED_COMMANDS:
        audit_to_stderr()
    try:
        status = run(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return status
    except (UsageError, SettingsError, MissingExtra, *ADMIN_ERRORS) as exc:
        print(f"tba-guard {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`| head`): nothing to report. Python flushes stdout once more at
        # exit, which would fail again, so stdout now points at /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
