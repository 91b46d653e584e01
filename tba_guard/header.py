"""Parsing the `Authorization: OAuth ...` header (RFC 5849 section 3.5.1).

Tolerant where clients differ in harmless ways (spacing, parameter order, scheme case, raw
base64 in a value), strict where ambiguity could be exploited (duplicates, unquoted values,
broken percent-encoding, oversize input). Every failure is `MissingRequiredParameter`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .errors import rejected

DEFAULT_MAX_HEADER_LENGTH = 4096
DEFAULT_MAX_HEADER_PARAMETERS = 32

#: The header as a whole is named in `oauth_parameters_rejected` when it cannot be parsed.
HEADER_NAME = "Authorization"

# name = "value", commas between, optional whitespace anywhere a client might put it. A value is
# any run of visible characters but a quote or backslash: percent-encoded values never need them.
_PARAMETER = re.compile(r'[ \t]*([A-Za-z0-9_.~%-]+)[ \t]*=[ \t]*"([^"\\\x00-\x1f\x7f]*)"[ \t]*')
_SCHEME = re.compile(r"[ \t]*([^ \t]*)[ \t]*(.*)", re.DOTALL)
_SEPARATOR = re.compile(r"[ \t]*(?:,[ \t]*)+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(value: str) -> str:
    """Strict RFC 3986 decoding: a stray `%`, a non-UTF-8 sequence or a NUL is an error."""
    if "%" not in value:
        return value
    if _BAD_ESCAPE.search(value):
        raise ValueError("malformed percent-encoding")
    try:
        decoded = unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 once decoded") from None
    if "\x00" in decoded:
        raise ValueError("NUL byte")
    return decoded


def parse_authorization(
    value: str,
    *,
    max_length: int = DEFAULT_MAX_HEADER_LENGTH,
    max_parameters: int = DEFAULT_MAX_HEADER_PARAMETERS,
) -> dict[str, str]:
    """Return the header's parameters, decoded, in the order sent (`realm` included)."""
    if len(value) > max_length:
        raise rejected(HEADER_NAME, reason=f"header longer than {max_length} characters")
    scheme, rest = _SCHEME.match(value).groups()  # type: ignore[union-attr]  # always matches
    if scheme.lower() != "oauth":
        raise rejected(HEADER_NAME, reason="the Authorization scheme is not OAuth")
    parameters: dict[str, str] = {}
    position, end = 0, len(rest)
    while True:
        separator = _SEPARATOR.match(rest, position)
        if separator:
            position = separator.end()
        if position >= end or not rest[position:].strip(" \t"):
            break
        match = _PARAMETER.match(rest, position)
        if match is None:
            raise rejected(HEADER_NAME, reason=f"unparseable text at offset {position}")
        position = match.end()
        if position < end and rest[position] != ",":
            raise rejected(HEADER_NAME, reason=f"expected a comma at offset {position}")
        raw_name, raw_value = match.groups()
        try:
            name = percent_decode(raw_name)
            decoded = percent_decode(raw_value)
        except ValueError as exc:
            raise rejected(raw_name, reason=f"{raw_name}: {exc}") from None
        if name in parameters:
            raise rejected(name, reason=f"{name} given twice in the header")
        if len(parameters) >= max_parameters:
            raise rejected(HEADER_NAME, reason=f"more than {max_parameters} parameters")
        parameters[name] = decoded
    return parameters
