"""The console stage of the demo: one user per role (fresh random passwords on every run, printed
once), then the web console and API served on 127.0.0.1 until Ctrl-C.

The owner user is bound to the departments of the systems the demo's incidents touched, so logging
in as the owner shows what a department sees: only its own incidents.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.config import Settings
    from hcm_soc.store.names import IndexNames
    from hcm_soc.store.users import Role


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    password: str
    role: str
    departments: tuple[str, ...]
    display_name: str


def demo_users(
    settings: Settings, client: Elasticsearch, names: IndexNames, owner_departments: tuple[str, ...]
) -> list[DemoUser]:
    """Create (or reset) the demo's admin, analyst and owner users; returns their credentials."""
    from hcm_soc.store.users import UserStore

    store = UserStore(client, names)
    wanted: list[tuple[str, Role, tuple[str, ...], str]] = [
        ("demo-admin", "admin", (), "Quản trị viên (demo)"),
        ("demo-analyst", "analyst", (), "Chuyên viên phân tích (demo)"),
        ("demo-owner", "owner", owner_departments, "Chủ quản hệ thống (demo)"),
    ]
    users: list[DemoUser] = []
    for username, role, departments, display in wanted:
        password = secrets.token_urlsafe(12)  # 16 characters: above the password policy's minimum
        if store.get(username) is None:
            store.add(username, password, role=role, departments=departments, display_name=display)
        else:
            store.update(username, role=role, departments=list(departments), display_name=display)
            store.set_password(username, password)
            store.set_disabled(username, False)
        users.append(DemoUser(username, password, role, tuple(departments), display))
    return users


def owner_departments(incident_assets: list[list[str]]) -> tuple[str, ...]:
    """The department of the first incident that touched an inventory asset (the owner's view)."""
    for departments in incident_assets:
        if departments:
            return (departments[0],)
    return ()
