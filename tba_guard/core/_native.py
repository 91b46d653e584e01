"""The Python twin of each function in `_speedups.c`: the same contract, answer for answer.

`accelerated.py` takes the C when it is built and these otherwise (the pure build); the
`accelerated` fixture of tests/conftest.py runs the header and signature tests on both, and
tests/core/test_speedups_differential.py holds them equal on generated input. Nothing here
imports the rest of the core, which imports this.
"""

from __future__ import annotations

import re
from typing import Final

# --- header_parameters ------------------------------------------------------------------------

# header.py's grammar narrowed to what the C answers: names of unreserved characters only (an
# escaped name is left to header.py, which checks that it does not decode to another's) and
# values of printable ASCII but the quote and the backslash. Possessive, so linear.
_NAME: Final = r"[A-Za-z0-9._~-]++"
_VALUE: Final = r"[ !#-\[\]-~]*+"
_ONE: Final = rf'{_NAME}[ \t]*+=[ \t]*+"{_VALUE}"'
_ASCII_LIST: Final = re.compile(rf"[ \t]*+(?:{_ONE})?[ \t]*+(?:,(?:[ \t]*+{_ONE})?[ \t]*+)*+")

# Escapes of printable ASCII decode by table lookup (both cases of hex digit).
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


def names_from_glue(pieces: list[str]) -> list[str]:
    """The names of a list split at its quotes, once a grammar has accepted it: the glue holds
    only commas, blanks, the names and their `=`, so dropping all but the names and the `=`
    that ends each leaves one split."""
    glue = "".join(pieces[0:-1:2]).replace(",", "").replace(" ", "")
    if "\t" in glue:
        glue = glue.replace("\t", "")
    return glue.split("=")[:-1]


def header_parameters(text: str, /) -> dict[str, str] | None:
    """The parameters of an ASCII list of name="value" (blanks around each part, empty elements
    allowed), in order, values decoded; None when the text is not ASCII, is not such a list,
    names a parameter twice, escapes a name, or escapes anything but printable ASCII."""
    if not _ASCII_LIST.fullmatch(text):
        return None
    # Values hold no quote: splitting at the quotes puts them at odd positions.
    pieces = text.split('"')
    names = names_from_glue(pieces)
    parameters = dict(zip(names, pieces[1::2], strict=True))
    if len(parameters) < len(names):
        return None  # a name twice
    if "%" in text:
        for name, value in parameters.items():  # usually just the signature
            if "%" in value:
                decoded = decode_printable_escapes(value)
                if decoded is None:
                    return None
                parameters[name] = decoded
    return parameters


# --- normalized_for_base_string ---------------------------------------------------------------

_UNRESERVED_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
#: 1 for an unreserved byte, else 0: `0 in text.translate(table)` finds any other byte in one C
#: pass and a memchr, without the 256-entry setup a deletion table costs per call.
_UNRESERVED_TABLE: Final = bytes(int(byte in _UNRESERVED_BYTES) for byte in range(256))
#: Each byte as the base string holds it (RFC 5849 section 3.6, then `%` again as `%25`).
_ENCODED_TWICE: Final = tuple(
    chr(byte) if bytes([byte]) in _UNRESERVED_BYTES else f"%25{byte:02X}" for byte in range(256)
)
#: Header parameters the signature does not cover (RFC 5849 section 3.4.1.3.1).
_UNSIGNED: Final = frozenset({"realm", "oauth_signature"})
#: Joins a name to its value while sorting: it sorts before every character an encoded name
#: holds, so sorting "name\0value" orders by name, then value, as section 3.4.1.3.2 sorts.
_PAIR: Final = "\x00"


def encoded_twice(value: str) -> str:
    """RFC 5849 section 3.6 percent-encoding, as UTF-8 (surrogateescape: bytes that arrived as
    non-UTF-8 escapes come back out unchanged), then again for the base string."""
    if value.isascii():
        if value.isalnum() or 0 not in value.encode("ascii").translate(_UNRESERVED_TABLE):
            return value  # keys, nonces, timestamps: nothing to escape
        # One replacement per distinct byte (values hold few: a space, `&`, base64's `+/=`)
        # costs far less than a pass over every byte; `%` goes first, so none is escaped twice.
        specials = set(value.encode("ascii").translate(None, _UNRESERVED_BYTES))
        if 0x25 in specials:
            specials.discard(0x25)
            value = value.replace("%", "%2525")
        for byte in specials:
            value = value.replace(chr(byte), _ENCODED_TWICE[byte])
        return value
    return "".join([_ENCODED_TWICE[byte] for byte in value.encode("utf-8", "surrogateescape")])


def normalized_for_base_string(oauth: dict[str, str], params: list[tuple[str, str]], /) -> str:
    """The normalized parameters of `oauth` (a dict; realm and oauth_signature left out) and
    `params` (a list of (name, value) pairs), percent-encoded twice, as the base string holds
    them: pairs joined by %26, names and values by %3D."""
    encoded = [
        f"{encoded_twice(name)}{_PAIR}{encoded_twice(value)}"
        for name, value in oauth.items()
        if name not in _UNSIGNED
    ]
    encoded += [f"{encoded_twice(name)}{_PAIR}{encoded_twice(value)}" for name, value in params]
    # Sorting the twice-encoded form gives the once-encoded order: `%` and its `%25` compare
    # alike against every other character.
    encoded.sort()
    return "%26".join(encoded).replace(_PAIR, "%3D")
