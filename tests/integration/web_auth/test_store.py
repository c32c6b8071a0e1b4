"""UserStore and AuditLog against real Elasticsearch: users, sessions, API tokens, the audit trail."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.passwords import PasswordHashing, WeakPassword
from hcm_soc.store.audit import AuditLog
from hcm_soc.store.names import IndexNames
from hcm_soc.store.users import (
    InvalidUser,
    TokenExists,
    TokenNotFound,
    UserExists,
    UserNotFound,
    UserStore,
)
from tests.integration.web_auth.conftest import PASSWORD, T0, FakeClock


def test_add_get_list_never_exposes_the_hash(
    users: UserStore, es: Elasticsearch, installed: IndexNames
) -> None:
    assert users.list() == []  # the index exists, no user document yet
    user = users.add("owner.gtvt", PASSWORD, role="owner", departments=["so-gtvt"], display_name="Sở GTVT")
    assert user.created == T0 and user.departments == ["so-gtvt"] and not user.disabled
    users.add("analyst1", PASSWORD, role="analyst")
    assert [u.username for u in users.list()] == ["analyst1", "owner.gtvt"]
    got = users.get("owner.gtvt")
    assert got is not None and got.display_name == "Sở GTVT" and got.role == "owner"
    assert "password_hash" not in got.model_dump()
    stored = es.get(index=installed.users, id="user:owner.gtvt")["_source"]
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)
    assert users.get("nobody") is None and users.get("../etc") is None


def test_add_refuses_duplicates_weak_passwords_and_bad_input(users: UserStore) -> None:
    users.add("admin1", PASSWORD, role="admin")
    with pytest.raises(UserExists, match="exists already"):
        users.add("admin1", PASSWORD, role="admin")
    with pytest.raises(WeakPassword, match="at least 12"):
        users.add("admin2", "short", role="admin")
    with pytest.raises(WeakPassword, match="user name"):
        users.add("admin2pass1234", "admin2pass1234", role="admin")
    with pytest.raises(InvalidUser, match="lowercase"):
        users.add("Admin2", PASSWORD, role="admin")
    with pytest.raises(InvalidUser, match="at least one department"):
        users.add("owner2", PASSWORD, role="owner")
    assert [u.username for u in users.list()] == ["admin1"]


def test_verify_password_records_login_and_rehashes(
    es: Elasticsearch, installed: IndexNames, clock: FakeClock, users: UserStore
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    assert users.verify_password("analyst1", PASSWORD + "x") is None
    assert users.verify_password("nobody", PASSWORD) is None
    clock.advance(60)
    user = users.verify_password(" Analyst1 ", PASSWORD)  # names are typed loosely at the form
    assert user is not None and user.last_login == T0 + timedelta(seconds=60)
    # stronger parameters later: the next successful login re-hashes with them
    stronger = UserStore(es, installed, clock=clock, hashing=PasswordHashing(time_cost=2, memory_cost=8192))
    assert stronger.verify_password("analyst1", PASSWORD) is not None
    stored = es.get(index=installed.users, id="user:analyst1")["_source"]["password_hash"]
    assert ",t=2," in stored
    users.set_disabled("analyst1", True)
    assert users.verify_password("analyst1", PASSWORD) is None


def test_sessions_slide_and_expire(
    users: UserStore, clock: FakeClock, es: Elasticsearch, installed: IndexNames
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    sid, csrf = users.create_session("analyst1", ttl=600)
    assert len(sid) == 43 and len(csrf) == 43 and sid != csrf
    # only the hash is stored, keyed by it
    doc = es.get(index=installed.users, id="session:" + hashlib.sha256(sid.encode()).hexdigest())
    assert sid not in str(doc["_source"])
    session = users.get_session(sid)
    assert session is not None and session.username == "analyst1" and session.csrf == csrf
    for _ in range(3):  # used every 500 s: each use pushes the end out
        clock.advance(500)
        assert users.get_session(sid) is not None
    clock.advance(601)  # idle longer than the ttl
    assert users.get_session(sid) is None
    assert users.get_session(sid) is None  # and it was deleted
    assert users.get_session("not-a-session") is None
    assert users.get_session("A" * 43) is None


def test_logout_disable_and_password_change_end_sessions(users: UserStore) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    s1, _ = users.create_session("analyst1", ttl=600)
    s2, _ = users.create_session("analyst1", ttl=600)
    s3, _ = users.create_session("analyst1", ttl=600)
    assert users.delete_session(s1) is True
    assert users.get_session(s1) is None and users.get_session(s2) is not None
    assert users.delete_session(s1) is False
    users.set_password("analyst1", PASSWORD + " mới", keep_session=s3)
    assert users.get_session(s2) is None
    assert users.get_session(s3) is not None  # the session that changed the password stays
    assert users.verify_password("analyst1", PASSWORD) is None
    assert users.verify_password("analyst1", PASSWORD + " mới") is not None
    users.set_disabled("analyst1", True)
    assert users.get_session(s3) is None
    users.set_disabled("analyst1", False)
    assert users.get_session(s3) is None  # enabling does not bring old sessions back
    with pytest.raises(UserNotFound):
        users.set_password("nobody", PASSWORD)


def test_a_disabled_users_live_session_stops_at_once(
    users: UserStore, es: Elasticsearch, installed: IndexNames
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    sid, _ = users.create_session("analyst1", ttl=600)
    # even if ending the sessions had failed, the lookup checks the account
    src = es.get(index=installed.users, id="user:analyst1")["_source"]
    es.index(
        index=installed.users, id="user:analyst1", document={**src, "disabled": True}, refresh="wait_for"
    )
    assert users.get_session(sid) is None


def test_tokens(users: UserStore, clock: FakeClock, es: Elasticsearch, installed: IndexNames) -> None:
    users.add("collector", PASSWORD, role="analyst")
    token = users.create_token("collector", "q1-syslog")
    assert token.startswith("hcm_") and len(token) == 47
    stored = es.get(index=installed.users, id="token:" + hashlib.sha256(token.encode()).hexdigest())[
        "_source"
    ]
    assert token not in str(stored) and stored["hint"] == token[:8] + "…"
    with pytest.raises(TokenExists):
        users.create_token("collector", "q1-syslog")
    with pytest.raises(InvalidUser):
        users.create_token("collector", "bad name")
    with pytest.raises(UserNotFound):
        users.create_token("nobody", "x")
    other = users.create_token("collector", "q2")
    user = users.verify_token(token)
    assert user is not None and user.username == "collector"
    assert users.verify_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert users.verify_token("hcm_short") is None and users.verify_token("") is None
    listed = users.list_tokens("collector")
    assert [t.name for t in listed] == ["q1-syslog", "q2"]
    assert listed[0].last_used == T0 and listed[1].last_used is None
    users.revoke_token("collector", "q1-syslog")
    assert users.verify_token(token) is None
    assert users.verify_token(other) is not None
    with pytest.raises(TokenNotFound):
        users.revoke_token("collector", "q1-syslog")
    users.set_disabled("collector", True)
    assert users.verify_token(other) is None
    with pytest.raises(InvalidUser, match="disabled"):
        users.create_token("collector", "q3")
    users.set_disabled("collector", False)
    assert users.verify_token(other) is not None


def test_update_role_and_departments(users: UserStore) -> None:
    users.add("owner1", PASSWORD, role="owner", departments=["so-a"])
    assert users.update("owner1", departments=["so-b", "so-a"]).departments == ["so-a", "so-b"]
    changed = users.update("owner1", role="analyst")
    assert changed.role == "analyst" and changed.departments == []
    with pytest.raises(InvalidUser):
        users.update("owner1", role="owner")  # no departments given
    assert users.update("owner1", role="owner", departments=["so-c"], display_name="C").display_name == "C"


def test_audit_trail(audit: AuditLog, clock: FakeClock, es: Elasticsearch, installed: IndexNames) -> None:
    audit.write(
        "login",
        actor="anonymous",
        outcome="failure",
        message="failed",
        details={"client": {"address": "10.0.0.1"}, "n": 3},
    )
    clock.advance(1)
    audit.write(
        "user.add", actor="cli:root", outcome="success", message="added", details={"departments": ["a", "b"]}
    )
    es.indices.refresh(index=installed.audit)
    entries = audit.list()
    assert [e.action for e in entries] == ["user.add", "login"]
    assert entries[0].actor == "cli:root" and entries[0].details == {"departments": ["a", "b"]}
    assert entries[1].details == {"client": {"address": "10.0.0.1"}, "n": "3"}
    assert entries[1].timestamp == T0
    assert [e.action for e in audit.list(action="login")] == ["login"]
    assert [e.action for e in audit.list(actor="cli:root")] == ["user.add"]
    # a data stream (append-only): its backing indices are hidden `.ds-` indices
    assert all(name.startswith(".ds-") for name in es.indices.get(index=installed.audit))
