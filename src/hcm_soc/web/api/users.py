"""`/api/users` (administrators): list users with their API tokens, add a user, disable or enable
one, create an API token (its text is answered once; only its hash is stored). Every change is
written to the audit trail, refused ones too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hcm_soc.errors import HcmSocError
from hcm_soc.web.api.deps import get_services, reader, writer
from hcm_soc.web.api.schemas import ERRORS, TokenIn, TokenOut, UserIn
from hcm_soc.web.auth import Principal
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/users", tags=["users"], responses=ERRORS)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such user"}}


def _audited(
    services: WebServices,
    principal: Principal,
    action: str,
    message: str,
    details: dict[str, Any],
    change: Any,
) -> Any:
    """Run `change`; write the audit entry whatever the outcome, then answer or re-raise."""
    try:
        result = change()
    except HcmSocError as e:
        services.audit.write(
            action,
            actor=f"user:{principal.username}",
            outcome="failure",
            message=f"{message}: {e}",
            details=details,
        )
        raise
    services.audit.write(
        action, actor=f"user:{principal.username}", outcome="success", message=message, details=details
    )
    return result


def _require(services: WebServices, username: str) -> None:
    if services.users.get(username) is None:
        raise ApiError(404, "not_found", f"user {username}: not found (GET /api/users lists them)")


@router.get("", summary="Users and their API tokens (never a password hash or a token)")
def list_users(
    principal: Principal = reader("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    items = []
    for user in services.users.list():
        tokens = [
            {
                "name": t.name,
                "created": t.created.isoformat(),
                "last_used": t.last_used.isoformat() if t.last_used else None,
                "hint": t.hint,
            }
            for t in services.users.list_tokens(user.username)
        ]
        items.append({**user.model_dump(mode="json"), "tokens": tokens})
    return {"items": items, "total": len(items)}


@router.post("", summary="Add a user", status_code=201, responses={409: {"description": "the name is taken"}})
def add_user(
    body: UserIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    details = {"username": body.username, "role": body.role, "departments": body.departments}
    user = _audited(
        services,
        principal,
        "user.add",
        f"added user {body.username} ({body.role})",
        details,
        lambda: services.users.add(
            body.username,
            body.password,
            role=body.role,
            departments=body.departments,
            display_name=body.display_name,
        ),
    )
    out: dict[str, Any] = user.model_dump(mode="json")
    return out


def _set_disabled(
    services: WebServices, principal: Principal, username: str, disabled: bool
) -> dict[str, Any]:
    _require(services, username)
    if disabled and username == principal.username:
        raise ApiError(409, "conflict", "you cannot disable your own account; ask another administrator")
    word = "disable" if disabled else "enable"
    _audited(
        services,
        principal,
        f"user.{word}",
        f"{word}d user {username}",
        {"username": username},
        lambda: services.users.set_disabled(username, disabled),
    )
    return {"username": username, "disabled": disabled}


@router.post("/{username}/disable", summary="Disable a user (sessions end, tokens stop)", responses=NOT_FOUND)
def disable_user(
    username: str,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return _set_disabled(services, principal, username, True)


@router.post("/{username}/enable", summary="Enable a user", responses=NOT_FOUND)
def enable_user(
    username: str,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    return _set_disabled(services, principal, username, False)


@router.post(
    "/{username}/tokens",
    summary="Create an API token (shown once)",
    status_code=201,
    response_model=TokenOut,
    responses={**NOT_FOUND, 409: {"description": "the user has a token of that name"}},
)
def create_token(
    username: str,
    body: TokenIn,
    principal: Principal = writer("admin"),
    services: WebServices = Depends(get_services),
) -> TokenOut:
    _require(services, username)
    token: str = _audited(
        services,
        principal,
        "token.create",
        f"created API token {body.name!r} for {username}",
        {"username": username, "token_name": body.name},
        lambda: services.users.create_token(username, body.name),
    )
    return TokenOut(username=username, name=body.name, token=token)
