"""Fixtures for the access-control tests: a fake clock, a cheap (still argon2id) hasher, the user
store and audit trail on the test's own index prefix, and a small FastAPI app with the login
routes, the app's error mapping and a few routes guarded by the dependencies under test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from elasticsearch import Elasticsearch
from fastapi import Depends, FastAPI, Form
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from hcm_soc.config import Settings, load_settings
from hcm_soc.passwords import PasswordHashing
from hcm_soc.store.audit import AuditLog
from hcm_soc.store.names import IndexNames
from hcm_soc.store.users import UserStore
from hcm_soc.web.auth import Principal, api_user, page_user
from hcm_soc.web.auth.routes import router

PASSWORD = "sông Sài Gòn mùa nước nổi"
T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def hashing() -> PasswordHashing:
    return PasswordHashing(time_cost=1, memory_cost=8192)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def users(es: Elasticsearch, installed: IndexNames, clock: FakeClock, hashing: PasswordHashing) -> UserStore:
    return UserStore(es, installed, clock=clock, hashing=hashing)


@pytest.fixture
def audit(es: Elasticsearch, installed: IndexNames, clock: FakeClock) -> AuditLog:
    return AuditLog(es, installed, clock=clock)


def settings_for(names: IndexNames, **web: str) -> Settings:
    env = {"HCM_SOC_INDEX_PREFIX": names.prefix, "HCM_SOC_INDEX_NAMESPACE": names.namespace}
    env.update({f"HCM_SOC_WEB_{k.upper()}": v for k, v in web.items()})
    return load_settings(env=env)


@dataclass
class Services:
    """What the auth routes use of the app's WebServices."""

    settings: Settings
    users: UserStore
    audit: AuditLog
    clock: FakeClock


def small_app(services: Services) -> FastAPI:
    from hcm_soc.web.app import STATIC_DIR
    from hcm_soc.web.errors import install_error_handlers

    app = FastAPI()
    app.state.services = services
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)

    @app.get("/api/analysts-only")
    def analysts_only(p: Annotated[Principal, Depends(api_user("analyst", "admin"))]) -> dict[str, Any]:
        return {"user": p.username, "via": p.via}

    @app.post("/api/change")
    def change(p: Annotated[Principal, Depends(api_user())]) -> dict[str, Any]:
        return {"changed_by": p.username}

    @app.get("/page/admin")
    def admin_page(p: Annotated[Principal, Depends(page_user("admin"))]) -> dict[str, Any]:
        return {"page": "admin", "user": p.username}

    @app.post("/page/comment")
    def comment(
        p: Annotated[Principal, Depends(page_user())], text: Annotated[str, Form()]
    ) -> dict[str, Any]:
        return {"comment": text, "by": p.username}

    return app


@pytest.fixture
def services(users: UserStore, audit: AuditLog, clock: FakeClock, installed: IndexNames) -> Services:
    return Services(
        settings_for(installed, login_max_failures="3", login_lockout="300", session_ttl="3600"),
        users,
        audit,
        clock,
    )


@pytest.fixture
def web(services: Services) -> Iterator[TestClient]:
    with TestClient(small_app(services), base_url="http://testserver", follow_redirects=False) as client:
        yield client


def login(client: TestClient, username: str, password: str = PASSWORD, next: str = "/") -> Any:
    return client.post("/login", data={"username": username, "password": password, "next": next})
