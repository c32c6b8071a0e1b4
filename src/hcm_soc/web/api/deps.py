"""What every API route needs: the services, the caller (roles and, for writes, the CSRF token both
checked by `api_user` on every state-changing session request), and the optimistic-concurrency token of a write."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Depends, Request

from hcm_soc.web.api.schemas import Role
from hcm_soc.web.auth import Principal, api_user
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

_IF_MATCH = re.compile(r'^\s*"?(\d{1,18})"?\s*$')


def get_services(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


def reader(*roles: Role) -> Any:
    """Dependency: the caller, who must have one of `roles` (401 / 403 otherwise)."""
    return Depends(api_user(*roles))


def writer(*roles: Role) -> Any:
    """Dependency for a state-changing route. The same as `reader`: `api_user` itself refuses a
    POST/PUT/PATCH/DELETE of a session without its CSRF token (token callers are exempt: a browser
    never sends a bearer token by itself); the name says at the route that it writes."""
    return Depends(api_user(*roles))


def actor(principal: Principal) -> str:
    """How a person is named on the incident timeline."""
    return f"user:{principal.username}"


def expected_seq_no(body_value: int | None, if_match: str | None) -> int | None:
    """The seq_no a write is conditional on: the body's `expected_seq_no` or `If-Match: "<seq_no>"`
    (`*` or neither: unconditional). Both given and different is a contradiction: 422."""
    header: int | None = None
    if if_match is not None and if_match.strip() != "*":
        m = _IF_MATCH.match(if_match)
        if m is None:
            raise ApiError(
                422, "invalid", f'If-Match {if_match!r}: expected the seq_no in quotes, e.g. If-Match: "12"'
            )
        header = int(m.group(1))
    if body_value is not None and header is not None and body_value != header:
        raise ApiError(
            422, "invalid", f"expected_seq_no {body_value} and If-Match {header} disagree; send one of them"
        )
    return body_value if body_value is not None else header
