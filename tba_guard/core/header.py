"""Parsing the `Authorization: OAuth ...` header (RFC 5849 section 3.5.1).

Tolerant where clients differ in harmless ways (spacing, parameter order, scheme case, raw
base64 in a value), strict where ambiguity could be exploited (duplicates, unquoted values,
broken percent-encoding, oversize input). Every failure is `MissingRequiredParameter`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote

from .errors import rejected

DEFAULT_MAX_HEADER_LENGTH: Final = 4096
DEFAULT_MAX_HEADER_PARAMETERS: Final = 32

#: The header as a whole is named in `oauth_parameters_rejected` when it cannot be parsed.
HEADER_NAME: Final = "Authorization"

# name = "value", commas between, optional whitespace anywhere a client might put it. A value is
# any run of visible characters but a quote or backslash: percent-encoded values never need them.
# A list in the form clients write is recognised without scanning every value (see
# `_names_as_clients_write`); any other is validated by one possessive (non-backtracking, so
# linear) match. Either way the parameters are pulled out by splitting at the quotes.
_NAME: Final = r"[A-Za-z0-9_.~%-]++"
_VALUE: Final = r'[^"\\\x00-\x1f\x7f]*+'
_ONE: Final = rf'{_NAME}[ \t]*+=[ \t]*+"{_VALUE}"'
_LIST: Final = re.compile(rf"[ \t]*+(?:{_ONE})?[ \t]*+(?:,(?:[ \t]*+{_ONE})?[ \t]*+)*+")
_SCHEME: Final = re.compile(r"[ \t]*([^ \t]*)[ \t]*(.*)", re.DOTALL)
# Printable ASCII but the backslash (the quote included); and the characters of a name. As
# translation tables (1 for such a byte, else 0): `0 in text.translate(table)` finds any other
# byte in one C pass and a memchr, without the 256-entry setup a deletion table costs per call.
_PLAIN_BYTES: Final = bytes(range(0x20, 0x7F)).replace(b"\\", b"")
_NAME_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.~%-"
_PLAIN_TABLE: Final = bytes(int(byte in _PLAIN_BYTES) for byte in range(256))
_NAME_TABLE: Final = bytes(int(byte in _NAME_BYTES) for byte in range(256))
_PROTOCOL_NAMES: Final = frozenset(
    {
        "realm",
        "oauth_consumer_key",
        "oauth_token",
        "oauth_signature_method",
        "oauth_signature",
        "oauth_timestamp",
        "oauth_nonce",
        "oauth_version",
        "oauth_body_hash",
        "oauth_callback",
        "oauth_verifier",
    }
)
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


# Escapes of printable ASCII decode by table lookup; anything else (non-ASCII bytes, controls,
# malformed escapes) takes the strict path through `unquote`.
_PRINTABLE_ESCAPES: Final = {
    **{f"{i:02X}": chr(i) for i in range(0x20, 0x7F)},
    **{f"{i:02x}": chr(i) for i in range(0x20, 0x7F)},
}


def decode_printable_escapes(value: str) -> str | None:
    """`value` with each `%XX` decoded, when every escape in it is of printable ASCII (as in a
    base64 signature, or `%26` in a form value); None when some escape is anything else."""
    pieces = value.split("%")
    parts = [pieces[0]]
    table = _PRINTABLE_ESCAPES
    for piece in pieces[1:]:
        char = table.get(piece[:2])
        if char is None:
            return None
        parts.append(char)
        parts.append(piece[2:])
    return "".join(parts)


def percent_decode(value: str) -> str:
    """Strict RFC 3986 decoding: a stray `%`, a non-UTF-8 sequence or a NUL is an error."""
    if "%" not in value:
        return value
    # The usual escapes are a base64 signature's: three replacements decode them. If a `%` is
    # left, the value takes the general path from the start.
    decoded = value.replace("%3D", "=").replace("%2B", "+").replace("%2F", "/")
    if "%" not in decoded:
        return decoded
    printable = decode_printable_escapes(value)
    if printable is not None:
        return printable
    if _BAD_ESCAPE.search(value):
        raise ValueError("malformed percent-encoding")
    try:
        decoded = unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 once decoded") from None
    if "\x00" in decoded:
        raise ValueError("NUL byte")
    return decoded


def _decoded(raw: dict[str, str]) -> dict[str, str]:
    """Percent-decode names and values; a name that decodes to another's is a duplicate."""
    parameters: dict[str, str] = {}
    for raw_name, raw_value in raw.items():
        try:
            name = percent_decode(raw_name)
            value = percent_decode(raw_value)
        except ValueError as exc:
            raise rejected(raw_name, reason=f"{raw_name}: {exc}") from None
        if name in parameters:
            raise rejected(name, reason=f"{name} given twice in the header")
        parameters[name] = value
    return parameters


def _names_as_clients_write(rest: str, pieces: list[str]) -> list[str] | None:
    """The names, when the list is written as clients write it: `name="value"` joined by `, `
    or by `,`, nothing else, in printable ASCII. Then the glue between the values, joined at
    the quotes, is the names joined by `=", ` and ended by `="`; one split undoes that, and
    names of name characters only prove the shape. Anything else (blanks elsewhere, tabs,
    empty elements, non-ASCII values) returns None and meets the full grammar, `_LIST`; this
    path only saves scanning every value with a regular expression.
    """
    # Anything outside printable ASCII encodes to bytes the table refuses (surrogates too).
    if 0 in rest.encode("utf-8", "surrogatepass").translate(_PLAIN_TABLE):
        return None  # a tab, a control character, a backslash or non-ASCII: for `_LIST` to judge
    if not len(pieces) % 2:
        # An odd number of quotes leaves a value open; its text would otherwise be dropped.
        return None
    glue = '"'.join(pieces[0::2])
    if not glue.endswith('="'):
        return None
    names = glue[:-2].split('=", ' if '=", ' in glue else '=",')
    if all(name in _PROTOCOL_NAMES for name in names):
        return names  # the usual names: no need to look at their characters
    if not all(names) or 0 in "".join(names).encode("ascii").translate(_NAME_TABLE):
        return None
    return names


def _names_from_glue(pieces: list[str]) -> list[str]:
    """The names of a list `_LIST` accepted: its glue holds only commas, blanks, the names and
    their `=`, so dropping all but the names and the `=` that ends each leaves one split."""
    glue = "".join(pieces[0:-1:2]).replace(",", "").replace(" ", "")
    if "\t" in glue:
        glue = glue.replace("\t", "")
    return glue.split("=")[:-1]


def _parameters_as_clients_write(rest: str) -> dict[str, str] | None:
    """The decoded parameters of a list in the form clients write (`_names_as_clients_write`),
    with no name twice, no escaped name and only escapes of printable ASCII in the values (a
    base64 signature's); else None, for `_parameters_by_grammar` to decide."""
    pieces = rest.split('"')
    names = _names_as_clients_write(rest, pieces)
    if names is None:
        return None
    parameters = dict(zip(names, pieces[1::2], strict=True))
    if len(parameters) < len(names):
        return None
    if "%" in rest:
        if "%" in "".join(names):
            return None
        for name, raw_value in parameters.items():  # usually just the signature
            if "%" in raw_value:
                decoded = decode_printable_escapes(raw_value)
                if decoded is None:
                    return None
                parameters[name] = decoded
    return parameters


# The compiled build answers the same question in C, for any ASCII list (see `_speedups.c`).
_parameters_quickly: Callable[[str], dict[str, str] | None]
try:
    from ._speedups import header_parameters as _parameters_quickly
except ImportError:  # the pure-Python build
    _parameters_quickly = _parameters_as_clients_write


def _parameters_by_grammar(rest: str, max_parameters: int) -> dict[str, str]:
    """The decoded parameters of any list `_LIST` accepts; every refusal of a list is here."""
    if not _LIST.fullmatch(rest):
        raise rejected(HEADER_NAME, reason='not a comma-separated list of name="value"')
    # Values hold no quote, so splitting at the quotes puts the values at odd positions, each
    # after its `, name=` glue.
    pieces = rest.split('"')
    names = _names_from_glue(pieces)
    values = pieces[1::2]
    if len(values) > max_parameters:
        raise rejected(HEADER_NAME, reason=f"more than {max_parameters} parameters")
    parameters = dict(zip(names, values, strict=True))
    if len(parameters) < len(names):
        twice = next(name for name, count in Counter(names).items() if count > 1)
        raise rejected(twice, reason=f"{twice} given twice in the header")
    if "%" in rest:
        if "%" in "".join(names):
            return _decoded(parameters)  # escaped names: rare, and may collide once decoded
        for name, raw_value in parameters.items():
            if "%" in raw_value:
                try:
                    parameters[name] = percent_decode(raw_value)
                except ValueError as exc:
                    raise rejected(name, reason=f"{name}: {exc}") from None
    return parameters


def parse_authorization(
    value: str,
    *,
    max_length: int = DEFAULT_MAX_HEADER_LENGTH,
    max_parameters: int = DEFAULT_MAX_HEADER_PARAMETERS,
) -> dict[str, str]:
    """Return the header's parameters, decoded, in the order sent (`realm` included)."""
    if len(value) > max_length:
        raise rejected(HEADER_NAME, reason=f"header longer than {max_length} characters")
    if value.startswith("OAuth "):  # as nearly every client writes it
        rest = value[6:]
    else:
        scheme, rest = _SCHEME.match(value).groups()  # type: ignore[union-attr]  # always matches
        if scheme.lower() != "oauth":
            raise rejected(HEADER_NAME, reason="the Authorization scheme is not OAuth")
    parameters = _parameters_quickly(rest)
    if parameters is None or len(parameters) > max_parameters:
        return _parameters_by_grammar(rest, max_parameters)
    return parameters
