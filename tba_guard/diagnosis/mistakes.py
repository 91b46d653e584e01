"""A wrong signature only says that the client signed something else: re-signing the request,
with the core's signer, as each known client mistake and each pair of them would, finds what.
Run after a rejection only (`explain`, development hints), never while verifying."""

from __future__ import annotations

import binascii
import hmac
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Final
from urllib.parse import quote, unquote

from ..core.request import OAuthRequest, base_string_uri, form_body_pairs, form_pairs
from ..core.signature import (
    HMAC_DIGESTS,
    PLAINTEXT,
    SIGNATURE_METHODS,
    base_string,
    hmac_digest,
    normalize_parameters,
    percent_encode,
    sign,
    signing_key,
)
from .causes import CAUSES, Cause, Finding, found

Pair = tuple[str, str]

#: How long the pair search may run before it stops and says so. A request with 20 query
#: parameters takes a small fraction of it (benchmarks/bench_explain.py measures it).
SEARCH_BUDGET: Final = 1.0
_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_ESCAPE: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_ARRAY_NAME: Final = re.compile(r"(.+?)\[[^\[\]]*\]")


@dataclass(frozen=True, slots=True)
class Signing:
    """What a client signs: each mistake returns a changed copy. The secrets stay out of repr.

    Three flags bend what the core would sign, for the mistakes no other request shows: a key
    of secrets not percent-encoded, a space written '+', a name's values left unsorted.
    """

    method: str
    uri: str
    header: tuple[Pair, ...]  # the oauth_* parameters (not realm, not the signature)
    query: tuple[Pair, ...]
    body: tuple[Pair, ...]  # a form body's parameters
    signature_method: str
    consumer_secret: str = field(repr=False)
    token_secret: str = field(repr=False)
    encode_key: bool = True
    space_as_plus: bool = False
    sort_values: bool = True


@dataclass(frozen=True, slots=True)
class Clues:
    """What the request itself shows, which no mistake changes: the raw query, the body."""

    server_uri: str
    client_uri: str
    realm: str | None  # the configured one
    realm_sent: str | None
    raw_query: tuple[Pair, ...]  # the query's non-empty items as sent, aligned with its pairs
    empty_items: int
    body_text: str
    is_form: bool
    header_method: str


Variants = Callable[[Signing, Clues], Iterable[Signing]]


@dataclass(frozen=True, slots=True)
class Mistake:
    """One client mistake, by its name in `CAUSES`, and how it changes the signing input.

    `stage` orders two mistakes as a client's code would make them (reading the URL, then the
    parameters, the encoding, the URL signed, the method, the key). `variants` is None for a
    mistake that changes no signature: `explain` finds it in the header.
    """

    name: str
    stage: int
    variants: Variants | None = None
    in_pairs: bool = True

    @property
    def cause(self) -> Cause:
        return CAUSES[self.name]


# --- the transformations ------------------------------------------------------------------------


def _changed(variants: Variants) -> Variants:
    """Keep only the variants that change something, once each: a mistake that changes nothing
    in this request does not apply to it."""

    def changed(signing: Signing, clues: Clues) -> list[Signing]:
        return [v for v in dict.fromkeys(variants(signing, clues)) if v != signing]

    return changed


def _unquote(text: str) -> str:
    return unquote(text, errors="surrogateescape")


def _literal_plus(s: Signing, c: Clues) -> Iterator[Signing]:
    query = list(s.query)
    sent = zip(c.raw_query, s.query, strict=False)  # the query's own items come first
    for index, ((raw_name, raw_value), (name, value)) in enumerate(sent):
        if "+" in raw_name or "+" in raw_value:
            query[index] = (
                _unquote(raw_name) if "+" in raw_name else name,
                _unquote(raw_value) if "+" in raw_value else value,
            )
    yield replace(s, query=tuple(query))


def _names_encoded_twice(s: Signing, c: Clues) -> Iterator[Signing]:
    query = list(s.query)
    for index, ((raw_name, _), (_, value)) in enumerate(zip(c.raw_query, s.query, strict=False)):
        if "%" in raw_name:
            query[index] = (raw_name, value)
    yield replace(s, query=tuple(query))


def _empty_items(s: Signing, c: Clues) -> Iterator[Signing]:
    if c.empty_items:
        yield replace(s, query=s.query + (("", ""),) * c.empty_items)


def _on_params(s: Signing, change: Callable[[tuple[Pair, ...]], tuple[Pair, ...]]) -> Signing:
    return replace(s, query=change(s.query), body=change(s.body))


def _repeated(pairs: Sequence[Pair]) -> set[str]:
    counts = Counter(name for name, _ in pairs)
    return {name for name, count in counts.items() if count > 1}


def _as_arrays(indexed: bool) -> Variants:
    def variants(s: Signing, c: Clues) -> Iterator[Signing]:
        def arrays(pairs: tuple[Pair, ...]) -> tuple[Pair, ...]:
            repeated, seen = _repeated(pairs), Counter[str]()
            out = []
            for name, value in pairs:
                if name in repeated:
                    out.append((f"{name}[{seen[name] if indexed else ''}]", value))
                    seen[name] += 1
                else:
                    out.append((name, value))
            return tuple(out)

        yield _on_params(s, arrays)

    return variants


def _brackets_dropped(s: Signing, c: Clues) -> Iterator[Signing]:
    def dropped(pairs: tuple[Pair, ...]) -> tuple[Pair, ...]:
        out = []
        for name, value in pairs:
            match = _ARRAY_NAME.fullmatch(name)
            out.append((match.group(1) if match else name, value))
        return tuple(out)

    yield _on_params(s, dropped)


def _collapsed(keep_last: bool) -> Variants:
    def variants(s: Signing, c: Clues) -> Iterator[Signing]:
        def collapse(pairs: tuple[Pair, ...]) -> tuple[Pair, ...]:
            kept: dict[str, int] = {}
            for index, (name, _) in enumerate(pairs):
                if keep_last or name not in kept:
                    kept[name] = index
            return tuple(pairs[i] for i in sorted(kept.values()))

        yield _on_params(s, collapse)

    return variants


def _values_unsorted(s: Signing, c: Clues) -> Iterator[Signing]:
    if _repeated(s.query + s.body):
        yield replace(s, sort_values=False)


def _utf8_twice(s: Signing, c: Clues) -> Iterator[Signing]:
    def twice(text: str) -> str:
        return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("latin-1")

    yield _on_params(s, lambda pairs: tuple((twice(n), twice(v)) for n, v in pairs))


def _space_as_plus(s: Signing, c: Clues) -> Iterator[Signing]:
    if any(" " in name or " " in value for name, value in chain(s.header, s.query, s.body)):
        yield replace(s, space_as_plus=True)


def _query_unsigned(s: Signing, c: Clues) -> Iterator[Signing]:
    yield replace(s, query=())


def _form_unsigned(s: Signing, c: Clues) -> Iterator[Signing]:
    yield replace(s, body=())


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _json_signed(s: Signing, c: Clues) -> Iterator[Signing]:
    if c.body_text and not c.is_form and _looks_like_json(c.body_text):
        yield replace(s, body=tuple(form_pairs(c.body_text)))


def _body_signed_not_form(s: Signing, c: Clues) -> Iterator[Signing]:
    if c.body_text and not c.is_form and not _looks_like_json(c.body_text):
        yield replace(s, body=tuple(form_pairs(c.body_text)))


def _realm_signed(s: Signing, c: Clues) -> Iterator[Signing]:
    if c.realm_sent is not None:
        yield replace(s, header=(*s.header, ("realm", c.realm_sent)))


def _sha1(s: Signing, c: Clues) -> Iterator[Signing]:
    if s.signature_method != "HMAC-SHA1":
        yield replace(s, signature_method="HMAC-SHA1")
        renamed = tuple(
            (n, "HMAC-SHA1" if n == "oauth_signature_method" else v) for n, v in s.header
        )
        yield replace(s, signature_method="HMAC-SHA1", header=renamed)


def _as_sent(s: Signing, c: Clues) -> Iterator[Signing]:
    """The request unchanged: when that reproduces the signature, only the body hash failed."""
    if any(name == "oauth_body_hash" for name, _ in s.header):
        yield s


def _split_uri(uri: str) -> tuple[str, str, str, str]:
    """scheme, host name, port ("" when none) and path of a base string URI."""
    scheme, _, rest = uri.partition("://")
    netloc, slash, path = rest.partition("/")
    name, colon, port = netloc.rpartition(":")
    if not colon or "]" in port:
        name, port = netloc, ""
    return scheme, name, port, slash + path


def _joined_uri(scheme: str, name: str, port: str, path: str) -> str:
    return f"{scheme}://{name}{':' + port if port else ''}{path}"


def _proxy_url(s: Signing, c: Clues) -> Iterator[Signing]:
    yield replace(s, uri=c.client_uri)


def _account_host(s: Signing, c: Clues) -> Iterator[Signing]:
    """Host names a client may build for the account: its ID's `_` or `-` kept as written, the
    realm as the first label, the account label left out or added."""
    scheme, name, port, path = _split_uri(s.uri)
    first, _, rest = name.partition(".")
    if not rest or name.startswith("[") or name.replace(".", "").isdigit():
        return
    hosts = [f"{first.replace('-', '_')}.{rest}", f"{first.replace('_', '-')}.{rest}"]
    if "." in rest:
        hosts.append(rest)
    if c.realm:
        account = c.realm.lower()
        hosts += [f"{account}.{rest}", f"{account.replace('_', '-')}.{rest}"]
        if first.replace("-", "_") != account:
            hosts.append(f"{account.replace('_', '-')}.{name}")
    for host in hosts:
        yield replace(s, uri=_joined_uri(scheme, host, port, path))


def _path_encoded(s: Signing, c: Clues) -> Iterator[Signing]:
    """The path as clients spell it otherwise: decoded, encoded strictly or loosely, hex case,
    encoded twice."""
    scheme, name, port, path = _split_uri(s.uri)
    decoded = _unquote(path)
    paths = (
        decoded,
        quote(decoded, safe="/", errors="surrogateescape"),
        quote(decoded, safe="/:@!$&'()*+,;=", errors="surrogateescape"),
        _ESCAPE.sub(lambda m: m.group().lower(), path),
        _ESCAPE.sub(lambda m: m.group().upper(), path),
        path.replace("%", "%25"),
    )
    for other in paths:
        yield replace(s, uri=_joined_uri(scheme, name, port, other))


def _other_scheme(s: Signing, c: Clues) -> Iterator[Signing]:
    scheme, name, port, path = _split_uri(s.uri)
    if scheme in _DEFAULT_PORTS:
        other = "http" if scheme == "https" else "https"
        netloc = f"{name}:{port}" if port else name
        yield replace(s, uri=base_string_uri(other, netloc, path))


def _default_port(s: Signing, c: Clues) -> Iterator[Signing]:
    scheme, name, port, path = _split_uri(s.uri)
    if not port and scheme in _DEFAULT_PORTS:
        yield replace(s, uri=_joined_uri(scheme, name, _DEFAULT_PORTS[scheme], path))


def _port_left_out(s: Signing, c: Clues) -> Iterator[Signing]:
    scheme, name, port, path = _split_uri(s.uri)
    if port:
        yield replace(s, uri=_joined_uri(scheme, name, "", path))


def _other_method(s: Signing, c: Clues) -> Iterator[Signing]:
    for method in _METHODS:
        yield replace(s, method=method)


def _token_secret_left_out(s: Signing, c: Clues) -> Iterator[Signing]:
    yield replace(s, token_secret="")


def _secrets_swapped(s: Signing, c: Clues) -> Iterator[Signing]:
    if s.token_secret:
        yield replace(s, consumer_secret=s.token_secret, token_secret=s.consumer_secret)


def _secrets_not_encoded(s: Signing, c: Clues) -> Iterator[Signing]:
    secrets = s.consumer_secret + s.token_secret
    if percent_encode(secrets) != secrets:
        yield replace(s, encode_key=False)


# --- the catalogue ------------------------------------------------------------------------------

_READ, _PARAMS, _SIGNED, _ENCODE, _URI, _METHOD, _KEY = range(7)

#: Every mistake, most specific first: those that need something rare in the request (a
#: repeated name, non-ASCII text, a `+`) before those any request could show.
MISTAKES: Final = (
    Mistake("body-hash-mismatch", _SIGNED, _as_sent, in_pairs=False),
    Mistake("names-encoded-twice", _READ, _changed(_names_encoded_twice)),
    Mistake("utf8-encoded-twice", _PARAMS, _changed(_utf8_twice)),
    Mistake("repeated-names-as-indexed-arrays", _PARAMS, _changed(_as_arrays(indexed=True))),
    Mistake("repeated-names-as-arrays", _PARAMS, _changed(_as_arrays(indexed=False))),
    Mistake("array-brackets-dropped", _PARAMS, _changed(_brackets_dropped)),
    Mistake("repeated-names-first-value", _PARAMS, _changed(_collapsed(keep_last=False))),
    Mistake("repeated-names-last-value", _PARAMS, _changed(_collapsed(keep_last=True))),
    Mistake("repeated-values-unsorted", _ENCODE, _changed(_values_unsorted)),
    Mistake("empty-items-signed", _READ, _changed(_empty_items)),
    Mistake("query-plus-literal", _READ, _changed(_literal_plus)),
    Mistake("space-as-plus", _ENCODE, _changed(_space_as_plus)),
    Mistake("json-body-signed", _SIGNED, _changed(_json_signed)),
    Mistake("body-signed-not-form", _SIGNED, _changed(_body_signed_not_form)),
    Mistake("form-body-unsigned", _SIGNED, _changed(_form_unsigned)),
    Mistake("query-unsigned", _SIGNED, _changed(_query_unsigned)),
    Mistake("realm-signed", _SIGNED, _changed(_realm_signed)),
    Mistake("hmac-sha1-signed", _SIGNED, _changed(_sha1)),
    Mistake("proxy-url-signed", _URI, _changed(_proxy_url)),
    Mistake("account-host", _URI, _changed(_account_host)),
    Mistake("path-encoded-differently", _URI, _changed(_path_encoded)),
    Mistake("other-scheme", _URI, _changed(_other_scheme)),
    Mistake("default-port-written", _URI, _changed(_default_port)),
    Mistake("port-left-out", _URI, _changed(_port_left_out)),
    Mistake("other-method", _METHOD, _changed(_other_method)),
    Mistake("token-secret-left-out", _KEY, _changed(_token_secret_left_out)),
    Mistake("secrets-swapped", _KEY, _changed(_secrets_swapped)),
    Mistake("secrets-not-encoded", _KEY, _changed(_secrets_not_encoded)),
    # The realm is not in the base string, so no re-signing can show it: explain compares the
    # realm sent with the configured one instead.
    Mistake("realm-spelling", _READ),
)
REALM_SPELLING: Final = MISTAKES[-1]
SEARCHED: Final = tuple(m for m in MISTAKES if m.variants is not None)
PAIRED: Final = tuple(m for m in SEARCHED if m.in_pairs)
PAIR_COUNT: Final = len(PAIRED) * (len(PAIRED) - 1) // 2


# --- re-signing -------------------------------------------------------------------------------


def base_string_of(s: Signing) -> str:
    """The base string of a signing input: the core's, or, for a space written '+' or values
    left unsorted, the core's encoding of each pair bent that way."""
    pairs = [*s.header, *s.query, *s.body]
    if s.sort_values and not s.space_as_plus:
        return base_string(s.method, s.uri, pairs)
    items = [normalize_parameters([pair]) for pair in pairs]  # "name=value", each encoded
    if s.space_as_plus:
        items = [item.replace("%20", "+") for item in items]
    if s.sort_values:  # by name, then value, as the core sorts
        items.sort(key=lambda item: item.partition("="))
    else:  # by name only: a name's values stay in the order sent
        items.sort(key=lambda item: item.partition("=")[0])
    # Without parameters the core's base string ends in the '&' that the parameters follow.
    return base_string(s.method, s.uri, ()) + percent_encode("&".join(items))


def _signed(s: Signing) -> tuple[str, str, str] | None:
    """What identifies a signature (method, key, base string), or None for a method the core
    does not sign."""
    if s.signature_method not in SIGNATURE_METHODS:
        return None
    if s.encode_key:
        key = signing_key(s.consumer_secret, s.token_secret)
    else:
        key = f"{s.consumer_secret}&{s.token_secret}"
    base = "" if s.signature_method == PLAINTEXT else base_string_of(s)
    return s.signature_method, key, base


def _signature(s: Signing, key: str, base: str) -> bytes | None:
    """The core's signature of `base`. A key whose secrets were not percent-encoded is the one
    thing the core never signs with: that mistake alone is signed with the core's HMAC over
    the raw key here (None when the key is no text a client could send)."""
    if s.encode_key:
        return sign(s.signature_method, base, s.consumer_secret, s.token_secret).encode()
    if s.signature_method == PLAINTEXT:
        return key.encode("utf-8", "surrogateescape")
    try:
        digest = hmac_digest(key, base.encode(), HMAC_DIGESTS[s.signature_method])
    except UnicodeEncodeError:
        return None
    return binascii.b2a_base64(digest, newline=False)


class _Trials:
    """Each distinct signing tried once: a pair that gives what a single mistake (or an earlier
    pair) already gave adds nothing."""

    def __init__(self, sent: bytes) -> None:
        self.sent = sent
        self.results: dict[tuple[str, str, str], bool] = {}

    def reproduces(self, s: Signing, *, new_only: bool) -> bool:
        signed = _signed(s)
        if signed is None:
            return False
        known = self.results.get(signed)
        if known is not None:
            return known and not new_only
        signature = _signature(s, signed[1], signed[2])
        result = signature is not None and hmac.compare_digest(signature, self.sent)
        self.results[signed] = result
        return result


def _finding(mistakes: Sequence[Mistake], s: Signing, clues: Clues) -> Finding:
    return found(
        [m.name for m in mistakes],
        named=True,
        uri=s.uri,
        method=s.method,
        server_uri=clues.server_uri,
        header_method=clues.header_method,
    )


def _variants(mistake: Mistake, s: Signing, clues: Clues) -> list[Signing]:
    assert mistake.variants is not None
    return list(mistake.variants(s, clues))


def start(
    request: OAuthRequest,
    *,
    client_uri: str,
    consumer_secret: str,
    token_secret: str,
    realm: str | None,
) -> tuple[Signing, Clues]:
    """The request's own signing input, and what it shows, from a request whose header is read."""
    oauth = request.oauth
    header = tuple((n, v) for n, v in oauth.items() if n not in ("realm", "oauth_signature"))
    items = request.query.split("&") if request.query else []
    raw = tuple((name, value) for name, _, value in (i.partition("=") for i in items if i))
    body_text = request.body.decode("utf-8", "surrogateescape")
    signing = Signing(
        method=request.method,
        uri=request.uri,
        header=header,
        query=tuple(form_pairs(request.query)) if request.query else (),
        body=tuple(form_body_pairs(request)),
        signature_method=oauth.get("oauth_signature_method", ""),
        consumer_secret=consumer_secret,
        token_secret=token_secret,
    )
    clues = Clues(
        server_uri=request.uri,
        client_uri=client_uri,
        realm=realm,
        realm_sent=oauth.get("realm"),
        raw_query=raw,
        empty_items=items.count(""),
        body_text=body_text,
        is_form=request.is_form,
        header_method=signing.signature_method,
    )
    return signing, clues


def search(
    request: OAuthRequest,
    *,
    client_uri: str,
    consumer_secret: str,
    token_secret: str,
    realm: str | None = None,
    budget: float = SEARCH_BUDGET,
) -> tuple[list[Finding], bool]:
    """Every mistake, then every pair of mistakes, that reproduces the sent signature: singles
    first, each in the catalogue's order. Also whether the search finished within `budget`
    seconds (a huge request may not)."""
    sent = request.oauth.get("oauth_signature")
    if sent is None:
        return [], True
    signing, clues = start(
        request,
        client_uri=client_uri,
        consumer_secret=consumer_secret,
        token_secret=token_secret,
        realm=realm,
    )
    trials = _Trials(sent.encode("utf-8", "surrogateescape"))
    deadline = time.perf_counter() + budget
    findings: list[Finding] = []
    singles: dict[Mistake, list[Signing]] = {}
    for mistake in SEARCHED:
        singles[mistake] = variants = _variants(mistake, signing, clues)
        # The unchanged request is tried first (by the body hash record) or not at all here.
        hit = next((v for v in variants if trials.reproduces(v, new_only=False)), None)
        if hit is not None:
            findings.append(_finding((mistake,), hit, clues))
    order = {mistake: (mistake.stage, index) for index, mistake in enumerate(PAIRED)}
    trials.reproduces(signing, new_only=True)  # the request as sent: never a pair's finding
    for index, one in enumerate(PAIRED):
        for other in PAIRED[index + 1 :]:
            if time.perf_counter() > deadline:
                return findings, False
            first, second = sorted((one, other), key=order.__getitem__)
            hit = _first_pair_hit(trials, singles[first], second, clues)
            if hit is not None:
                findings.append(_finding((first, second), hit, clues))
    return findings, True


def _first_pair_hit(
    trials: _Trials, firsts: list[Signing], second: Mistake, clues: Clues
) -> Signing | None:
    for made in firsts:
        for signing in _variants(second, made, clues):
            if trials.reproduces(signing, new_only=True):
                return signing
    return None


def verifies_as(
    request: OAuthRequest, uris: Iterable[str], *, consumer_secret: str, token_secret: str
) -> list[str]:
    """Those of `uris` under which the request, otherwise as sent, gives the signature sent:
    one signing each, for the few URLs an operator's configuration could have made."""
    sent = request.oauth.get("oauth_signature")
    if sent is None:
        return []
    signing, _ = start(
        request,
        client_uri=request.uri,
        consumer_secret=consumer_secret,
        token_secret=token_secret,
        realm=None,
    )
    trials = _Trials(sent.encode("utf-8", "surrogateescape"))
    return [uri for uri in uris if trials.reproduces(replace(signing, uri=uri), new_only=False)]
