"""Parsing the `Authorization: OAuth ...` header (RFC 5849 section 3.5.1).

Tolerant where clients differ in harmless ways (spacing, parameter order, scheme case, raw
base64 in a value), strict where ambiguity could be exploited (duplicates, unquoted values,
broken percent-encoding, oversize input). Every failure is `MissingRequiredParameter`.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final
from urllib.parse import unquote

# The two helpers are shared with `header_parameters`' Python twin, which cannot import this
# module (this module imports it). decode_printable_escapes is request.py's too.
from ._native import decode_printable_escapes as decode_printable_escapes
from ._native import names_from_glue
from .accelerated import header_parameters
from .errors import rejected

DEFAULT_MAX_HEADER_LENGTH: Final = 4096
DEFAULT_MAX_HEADER_PARAMETERS: Final = 32

#: The header as a whole is named in `oauth_parameters_rejected` when it cannot be parsed.
HEADER_NAME: Final = "Authorization"

# name = "value", commas between, optional whitespace anywhere a client might put it. A value is
# any run of visible characters but a quote or backslash: percent-encoded values never need them.
# The list is validated by one possessive (non-backtracking, so linear) match, and the
# parameters pulled out by splitting at the quotes. `header_parameters` (C, or its twin) answers
# the usual lists first; this grammar decides the rest and says why it refuses one.
_NAME: Final = r"[A-Za-z0-9_.~%-]++"
_VALUE: Final = r'[^"\\\x00-\x1f\x7f]*+'
_ONE: Final = rf'{_NAME}[ \t]*+=[ \t]*+"{_VALUE}"'
_LIST: Final = re.compile(rf"[ \t]*+(?:{_ONE})?[ \t]*+(?:,(?:[ \t]*+{_ONE})?[ \t]*+)*+")
_SCHEME: Final = re.compile(r"[ \t]*([^ \t]*)[ \t]*(.*)", re.DOTALL)
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(value: str) -> str:
    """Strict RFC 3986 decoding: a stray `%`, a non-UTF-8 sequence or a NUL is an error. Only
    lists `header_parameters` declines come here: rare, so no shortcut."""
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


def _parameters_by_grammar(rest: str, max_parameters: int) -> dict[str, str]:
    """The decoded parameters of any list `_LIST` accepts; every refusal of a list is here."""
    if not _LIST.fullmatch(rest):
        raise rejected(HEADER_NAME, reason='not a comma-separated list of name="value"')
    # Values hold no quote, so splitting at the quotes puts the values at odd positions, each
    # after its `, name=` glue.
    pieces = rest.split('"')
    names = names_from_glue(pieces)
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
    parameters = header_parameters(rest)
    if parameters is None or len(parameters) > max_parameters:
        return _parameters_by_grammar(rest, max_parameters)
    return parameters
