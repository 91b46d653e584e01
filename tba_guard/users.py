"""Who may authorize an integration on the consent page: NetSuite's entity and its roles.

Its own module, below both the settings (which read users from a file) and the flow's token
stores (which look them up), so that neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class User:
    """Someone who may authorize an integration on the consent page: NetSuite's entity, with
    the roles they may choose. `password` only serves the built-in sign-in form."""

    entity: str
    name: str
    password: str = field(default="", repr=False)
    roles: tuple[str, ...] = ()
    active: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.roles, list):  # from TOML or JSON
            object.__setattr__(self, "roles", tuple(self.roles))

    def may_use(self, role: str) -> bool:
        return self.active and role in self.roles
