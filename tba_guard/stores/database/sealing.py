"""Secrets sealed at rest with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`).

HMAC signatures need the secrets themselves, so they are encrypted rather than hashed, under a
key that lives outside the database (the `credential_key` setting): a dump of the tables alone
reveals no secret. Several keys may be given, newest first: the first seals, any of them opens,
which is how a key is replaced (`tba-guard db rekey`).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SealError(Exception):
    """A sealed secret that none of the keys opens, or that belongs to another row."""


def new_key() -> str:
    """A fresh random key, as `credential_key` takes it."""
    key: bytes = Fernet.generate_key()  # typed here: the compiled build checks without it
    return key.decode("ascii")


class Sealer:
    """Seals and opens one row's secret. The row's kind and id are sealed with the secret and
    checked on opening, so that a sealed value copied onto another row does not open there."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("no credential_key: secrets cannot be sealed or opened")
        self._fernet = MultiFernet([Fernet(key.encode("ascii")) for key in keys])

    def seal(self, kind: str, row_id: str, secret: str) -> str:
        sealed: bytes = self._fernet.encrypt(_bound(kind, row_id, secret))
        return sealed.decode("ascii")

    def open(self, kind: str, row_id: str, sealed: str) -> str:
        try:
            plain: bytes = self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealError(f"{kind} {row_id!r}: no credential_key opens its secret") from None
        prefix = _bound(kind, row_id, "")
        if not plain.startswith(prefix):
            raise SealError(f"{kind} {row_id!r}: its sealed secret belongs to another row")
        return plain[len(prefix) :].decode("utf-8")

    def reseal(self, kind: str, row_id: str, sealed: str) -> str:
        """The same secret sealed under the first key (opened with any of them)."""
        return self.seal(kind, row_id, self.open(kind, row_id, sealed))


def _bound(kind: str, row_id: str, secret: str) -> bytes:
    # The id's length comes first, so no id can pass for another whatever characters it holds.
    return f"{kind}:{len(row_id)}:{row_id}:{secret}".encode()
