"""Who is making a request (`Principal`) and the error every access-control decision raises.

A principal is rebuilt from the user record on every request, so a role or department change,
or disabling the account, applies to the very next request. Owners are bound to departments:
`can_see_incident` is the one place that says which incidents an owner may read, and API and
pages alike call it (an owner who guesses another department's incident id gets a 404/403,
never the incident).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hcm_soc.errors import HcmSocError

if TYPE_CHECKING:
    from hcm_soc.models.incident import Incident
    from hcm_soc.store.users import Role, User

AuthCode = Literal["unauthenticated", "forbidden", "csrf", "throttled"]


class AuthError(HcmSocError):
    """A request refused for who sent it: 401 (who are you), 403 (not allowed / bad CSRF
    token), 429 (too many failed logins). `code` is the stable code the API answers with."""

    def __init__(self, status: int, code: AuthCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: Role
    departments: tuple[str, ...]
    display_name: str | None
    via: Literal["session", "token"]
    csrf: str | None  # the session's CSRF token; None for a token caller (exempt from CSRF)

    @classmethod
    def from_user(cls, user: User, *, via: Literal["session", "token"], csrf: str | None) -> Principal:
        return cls(
            username=user.username,
            role=user.role,
            # only owners are bound to departments; any stray value on another role means nothing
            departments=tuple(user.departments) if user.role == "owner" else (),
            display_name=user.display_name,
            via=via,
            csrf=csrf,
        )

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def can_see_department(self, department: str | None) -> bool:
        if self.role != "owner":
            return True
        return department is not None and department in self.departments

    def can_see_incident(self, incident: Incident) -> bool:
        """Analysts and admins see every incident; an owner one that touches an asset of its departments."""
        if self.role != "owner":
            return True
        return any(asset.department in self.departments for asset in incident.assets)
