"""`hcm-soc users ...`: console accounts and API tokens (add, passwd, disable, enable, list,
token, tokens, revoke).

Passwords are read from a hidden prompt (asked twice) or, for scripts, one line on stdin with
`--password-stdin`; never from an option, which would land in the shell history and the process
list. `token` prints the new token once on stdout (only its hash is stored; a lost token is
revoked and replaced). Every change is written to the audit trail with the actor `cli:$USER`.
Exit codes: 0 ok, 2 bad input / unknown user / weak password / name taken, 3 Elasticsearch
unreachable.
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info
from hcm_soc.cli.rules import es_errors

if TYPE_CHECKING:
    from hcm_soc.store.audit import AuditLog
    from hcm_soc.store.users import UserStore

app = typer.Typer(
    help="Console users and API tokens: add, passwd, disable, enable, list, token, tokens, revoke.",
    no_args_is_help=True,
)

PASSWORD_STDIN_OPT = typer.Option(
    False, "--password-stdin", help="read the password from the first line of stdin (for scripts)"
)


def _stores(ctx: typer.Context) -> tuple[UserStore, AuditLog, ZoneInfo]:
    from hcm_soc.store.audit import AuditLog
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.users import UserStore

    app_ctx: AppContext = ctx.obj
    client = app_ctx.client()
    names = IndexNames.from_settings(app_ctx.settings)
    return UserStore(client, names), AuditLog(client, names), ZoneInfo(app_ctx.settings.timezone)


def _actor() -> str:
    return f"cli:{os.environ.get('USER') or getpass.getuser()}"


def _read_password(username: str, from_stdin: bool) -> str:
    from hcm_soc.passwords import check_password

    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise typer.BadParameter("stdin was empty: expected the password on the first line")
    else:
        password = typer.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
    check_password(password, username=username)  # before any write, with the policy's message
    return password


def _local(value: datetime | None, tz: ZoneInfo) -> str:
    return "-" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _warn_unknown_departments(ctx: typer.Context, departments: list[str]) -> None:
    """An owner bound to a department the inventory does not list sees nothing: say so (a
    warning, not an error: the inventory may get that department later)."""
    if not departments:
        return
    from hcm_soc.inventory import read_inventory

    app_ctx: AppContext = ctx.obj
    path = app_ctx.settings.paths.inventory
    inventory, _ = read_inventory(path)
    if inventory is None:
        info(f"warning: could not read the inventory {path} to check the department ids")
        return
    unknown = [d for d in departments if d not in inventory.departments]
    if unknown:
        info(
            f"warning: {', '.join(unknown)}: not a department of the inventory {path}; the user sees "
            "no incident of it until the inventory lists it (`hcm-soc inventory validate`)"
        )


@app.command("add")
def add(
    ctx: typer.Context,
    username: str = typer.Argument(..., help="lowercase letters, digits, '.', '_', '-' (e.g. nguyen.van.a)"),
    role: str = typer.Option(..., "--role", help="analyst, owner or admin"),
    department: list[str] | None = typer.Option(
        None, "--department", help="inventory department id an owner sees (repeatable; owners need one)"
    ),
    display_name: str | None = typer.Option(None, "--display-name", help="the name shown in the console"),
    password_stdin: bool = PASSWORD_STDIN_OPT,
) -> None:
    """Add a user (asks for the password twice unless --password-stdin)."""
    from hcm_soc.store.users import ROLES, USERNAME_RE, InvalidUser, validate_role_departments

    if role not in ROLES:
        raise typer.BadParameter(f"{role!r}: expected one of {', '.join(ROLES)}", param_hint="--role")
    if not USERNAME_RE.match(username):
        raise InvalidUser(
            f"{username!r}: a user name is 2-64 characters: lowercase letters, digits, '.', '_' or '-'"
        )
    validate_role_departments(role, department or [])  # fail before asking for a password
    password = _read_password(username, password_stdin)
    users, audit, _ = _stores(ctx)
    with es_errors():
        user = users.add(
            username,
            password,
            role=role,
            departments=department or [],
            display_name=display_name,
        )
        audit.write(
            "user.add",
            actor=_actor(),
            outcome="success",
            message=f"user {username} added with role {role}",
            details={"target": username, "role": role, "departments": user.departments},
        )
    _warn_unknown_departments(ctx, user.departments)
    info(
        f"user {username} added (role {role}{', departments ' + ', '.join(user.departments) if user.departments else ''})"
    )


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    password_stdin: bool = PASSWORD_STDIN_OPT,
) -> None:
    """Set a user's password; every session of the user ends."""
    users, audit, _ = _stores(ctx)
    with es_errors():
        if users.get(username) is None:
            from hcm_soc.store.users import UserNotFound

            raise UserNotFound(f"no user {username!r}; `hcm-soc users list` shows the users")
        password = _read_password(username, password_stdin)
        users.set_password(username, password)
        audit.write(
            "user.password",
            actor=_actor(),
            outcome="success",
            message=f"password of {username} changed; its sessions ended",
            details={"target": username},
        )
    info(f"password of {username} changed; its sessions were ended")


def _set_disabled(ctx: typer.Context, username: str, disabled: bool) -> None:
    users, audit, _ = _stores(ctx)
    action = "disabled" if disabled else "enabled"
    with es_errors():
        users.set_disabled(username, disabled)
        audit.write(
            "user.disable" if disabled else "user.enable",
            actor=_actor(),
            outcome="success",
            message=f"user {username} {action}",
            details={"target": username},
        )
    info(
        f"user {username} disabled: its sessions ended and its API tokens stop working"
        if disabled
        else f"user {username} enabled"
    )


@app.command("disable")
def disable(ctx: typer.Context, username: str = typer.Argument(...)) -> None:
    """Disable a user: sessions end at once, API tokens stop working (until `enable`)."""
    _set_disabled(ctx, username, True)


@app.command("enable")
def enable(ctx: typer.Context, username: str = typer.Argument(...)) -> None:
    """Enable a disabled user again."""
    _set_disabled(ctx, username, False)


@app.command("list")
def list_users(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the users (never their password hashes)."""
    users, _, tz = _stores(ctx)
    with es_errors():
        found = users.list()
    if json_out:
        emit_json([u.model_dump(mode="json") for u in found])
        return
    emit_table(
        ["USER", "ROLE", "DEPARTMENTS", "NAME", "STATUS", "LAST LOGIN"],
        [
            [
                u.username,
                u.role,
                ",".join(u.departments) or "-",
                u.display_name or "-",
                "disabled" if u.disabled else "active",
                _local(u.last_login, tz),
            ]
            for u in found
        ],
    )


@app.command("token")
def token(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    name: str = typer.Option(..., "--name", help="what the token is for, e.g. collector-q1"),
) -> None:
    """Create an API token for the user and print it once (send it as 'Authorization: Bearer …')."""
    users, audit, _ = _stores(ctx)
    with es_errors():
        value = users.create_token(username, name)
        audit.write(
            "token.create",
            actor=_actor(),
            outcome="success",
            message=f"API token {name!r} created for {username}",
            details={"target": username, "token_name": name},
        )
    sys.stdout.write(value + "\n")
    info(
        f"API token {name!r} for {username}: shown this once, store it now "
        f"(revoke with `hcm-soc users revoke {username} {name}`)"
    )


@app.command("tokens")
def tokens(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List a user's API tokens (names and use, never the tokens)."""
    users, _, tz = _stores(ctx)
    with es_errors():
        found = users.list_tokens(username)
    if json_out:
        rows: list[dict[str, Any]] = [
            {"name": t.name, "hint": t.hint, "created": t.created, "last_used": t.last_used} for t in found
        ]
        emit_json(rows)
        return
    emit_table(
        ["NAME", "TOKEN", "CREATED", "LAST USED"],
        [[t.name, t.hint, _local(t.created, tz), _local(t.last_used, tz)] for t in found],
    )


@app.command("revoke")
def revoke(ctx: typer.Context, username: str = typer.Argument(...), name: str = typer.Argument(...)) -> None:
    """Revoke (delete) a user's API token by name; it stops working at once."""
    users, audit, _ = _stores(ctx)
    with es_errors():
        users.revoke_token(username, name)
        audit.write(
            "token.revoke",
            actor=_actor(),
            outcome="success",
            message=f"API token {name!r} of {username} revoked",
            details={"target": username, "token_name": name},
        )
    info(f"API token {name!r} of {username} revoked")
