"""Login, logout, sessions, CSRF, API tokens and throttling through HTTP, on a small app with the
auth router, the app's error mapping and routes guarded by `api_user` / `page_user`."""

from __future__ import annotations

from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from hcm_soc.store.audit import AuditLog
from hcm_soc.store.names import IndexNames
from hcm_soc.store.users import UserStore
from tests.integration.web_auth.conftest import PASSWORD, FakeClock, Services, login, settings_for, small_app


def refreshed(es: Elasticsearch, names: IndexNames, audit: AuditLog, action: str | None = None) -> list:
    es.indices.refresh(index=names.audit)
    return audit.list(action=action)


def test_login_page_and_success(
    web: TestClient, users: UserStore, audit: AuditLog, es: Elasticsearch, installed: IndexNames
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    page = web.get("/login", params={"next": '/incidents?x="><script>alert(1)</script>'})
    assert page.status_code == 200
    assert 'action="/login"' in page.text and 'name="password"' in page.text
    assert "<script>alert(1)</script>" not in page.text  # the next value is escaped
    done = login(web, "analyst1", next="/incidents/INC-2026-000001?tab=alerts")
    assert done.status_code == 303
    assert done.headers["location"] == "/incidents/INC-2026-000001?tab=alerts"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("hcm_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # settings.web.secure_cookies is off here
    me = web.get("/api/me")
    assert me.status_code == 200
    body = me.json()
    assert body["username"] == "analyst1" and body["role"] == "analyst" and body["via"] == "session"
    assert len(body["csrf_token"]) == 43
    assert web.get("/login").status_code == 303  # logged in already: straight on
    entry = refreshed(es, installed, audit, "login")[0]
    assert entry.outcome == "success" and entry.actor == "user:analyst1"
    assert entry.details["client"] == {"address": "testclient"}


def test_next_never_leaves_the_site(web: TestClient, users: UserStore) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        web.cookies.clear()
        assert login(web, "analyst1", next=target).headers["location"] == "/"


def test_secure_cookie_flag_when_configured(
    services: Services, users: UserStore, installed: IndexNames
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    services.settings = settings_for(installed, secure_cookies="true")
    with TestClient(small_app(services), follow_redirects=False) as client:
        assert "Secure" in login(client, "analyst1").headers["set-cookie"]


def test_failures_are_generic_and_audited(
    web: TestClient,
    services: Services,
    users: UserStore,
    audit: AuditLog,
    es: Elasticsearch,
    installed: IndexNames,
) -> None:
    # five failures from one address here: keep the throttle (made at the first login) out of it
    services.settings = settings_for(installed, login_max_failures="10")
    users.add("analyst1", PASSWORD, role="analyst")
    users.add("gone1", PASSWORD, role="analyst")
    users.set_disabled("gone1", True)
    texts = set()
    for name, password in (("analyst1", "wrong password!!"), ("nobody", PASSWORD), ("gone1", PASSWORD)):
        r = login(web, name, password)
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert "Tên đăng nhập hoặc mật khẩu không đúng" in r.text
        texts.add(r.text)
    assert len(texts) == 1  # the same page whatever was wrong
    web.cookies.set("lang", "en")
    assert "Wrong user name or password" in login(web, "analyst1", "wrong password!!").text
    failures = refreshed(es, installed, audit, "login")
    assert len(failures) == 4 and {e.outcome for e in failures} == {"failure"}
    assert all(PASSWORD not in str(e.details) and PASSWORD not in e.message for e in failures)
    assert {e.details["username"] for e in failures} == {"analyst1", "nobody", "gone1"}


def test_throttling_refuses_even_the_right_password(
    web: TestClient,
    users: UserStore,
    clock: FakeClock,
    audit: AuditLog,
    es: Elasticsearch,
    installed: IndexNames,
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    for _ in range(3):  # login_max_failures = 3 in these tests
        assert login(web, "analyst1", "wrong password!!").status_code == 401
    refused = login(web, "analyst1")
    assert refused.status_code == 429
    assert "Đăng nhập sai quá nhiều lần" in refused.text and "5 phút" in refused.text
    assert refused.headers["retry-after"] == "300"
    assert "set-cookie" not in refused.headers
    assert [e.actor for e in refreshed(es, installed, audit, "login.lockout")] == ["system"]
    clock.advance(301)
    assert login(web, "analyst1").status_code == 303


def test_api_roles_and_owner_scoping(web: TestClient, users: UserStore) -> None:
    anonymous = web.get("/api/analysts-only")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    users.add("owner1", PASSWORD, role="owner", departments=["so-gtvt"])
    login(web, "owner1")
    denied = web.get("/api/analysts-only")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert web.get("/api/me").json()["departments"] == ["so-gtvt"]
    # a role change applies to the next request of the live session
    users.update("owner1", role="analyst")
    assert web.get("/api/analysts-only").json() == {"user": "owner1", "via": "session"}


def test_csrf_on_state_changing_session_requests(web: TestClient, users: UserStore) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    login(web, "analyst1")
    csrf = web.get("/api/me").json()["csrf_token"]
    no_token = web.post("/api/change", json={})
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf"
    assert web.post("/api/change", headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert web.post("/api/change", headers={"X-CSRF-Token": csrf}).json() == {"changed_by": "analyst1"}
    # plain forms send the field
    form = web.post("/page/comment", data={"text": "đã xem", "csrf_token": csrf})
    assert form.json() == {"comment": "đã xem", "by": "analyst1"}
    forged = web.post("/page/comment", data={"text": "forged"})
    assert forged.status_code == 403 and "text/html" in forged.headers["content-type"]


def test_api_tokens_bearer_only(web: TestClient, users: UserStore) -> None:
    users.add("collector", PASSWORD, role="analyst")
    token = users.create_token("collector", "q1")
    auth = {"Authorization": f"Bearer {token}"}
    assert web.get("/api/me", headers=auth).json()["via"] == "token"
    # token callers need no CSRF token: a browser never sends the header by itself
    assert web.post("/api/change", headers=auth).json() == {"changed_by": "collector"}
    assert web.get("/api/me", params={"token": token}).status_code == 401
    assert web.get("/api/me", params={"access_token": token}).status_code == 401
    assert web.get("/api/me", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    # a bad bearer token is refused even next to a good session
    users.add("analyst1", PASSWORD, role="analyst")
    login(web, "analyst1")
    assert web.get("/api/me").status_code == 200
    assert web.get("/api/me", headers={"Authorization": "Bearer hcm_wrong"}).status_code == 401
    users.revoke_token("collector", "q1")
    assert web.get("/api/me", headers=auth).status_code == 401


def test_pages_redirect_to_login_and_back(web: TestClient, users: UserStore) -> None:
    r = web.get("/page/admin", params={"tab": "rules"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/page/admin%3Ftab%3Drules"
    users.add("analyst1", PASSWORD, role="analyst")
    back = login(web, "analyst1", next="/page/admin?tab=rules")
    assert back.headers["location"] == "/page/admin?tab=rules"
    denied = web.get("/page/admin")
    assert denied.status_code == 403 and "text/html" in denied.headers["content-type"]


def test_logout_needs_csrf_and_ends_the_session(
    web: TestClient, users: UserStore, audit: AuditLog, es: Elasticsearch, installed: IndexNames
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    login(web, "analyst1")
    session_cookie = web.cookies["hcm_session"]
    csrf = web.get("/api/me").json()["csrf_token"]
    assert web.post("/logout").status_code == 403  # a cross-site form cannot log people out
    out = web.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert 'hcm_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert users.get_session(session_cookie) is None
    web.cookies.set("hcm_session", session_cookie)  # a copied cookie is worth nothing now
    assert web.get("/api/me").status_code == 401
    assert [e.actor for e in refreshed(es, installed, audit, "logout")] == ["user:analyst1"]


def test_disable_and_password_change_end_live_sessions(
    web: TestClient, users: UserStore, services: Services
) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    login(web, "analyst1")
    assert web.get("/api/me").status_code == 200
    users.set_disabled("analyst1", True)
    assert web.get("/api/me").status_code == 401
    users.set_disabled("analyst1", False)
    login(web, "analyst1")
    with TestClient(small_app(services), follow_redirects=False) as other_browser:
        login(other_browser, "analyst1")
        assert other_browser.get("/api/me").status_code == 200
        users.set_password("analyst1", PASSWORD + " mới", keep_session=web.cookies["hcm_session"])
        assert other_browser.get("/api/me").status_code == 401
    assert web.get("/api/me").status_code == 200


def test_a_new_login_replaces_a_planted_session(web: TestClient, users: UserStore) -> None:
    users.add("analyst1", PASSWORD, role="analyst")
    users.add("mallory", PASSWORD, role="analyst")
    planted, _ = users.create_session("mallory", ttl=600)
    done = web.post(
        "/login",
        data={"username": "analyst1", "password": PASSWORD},
        headers={"Cookie": f"hcm_session={planted}"},
    )
    assert done.status_code == 303
    assert done.cookies["hcm_session"] != planted
    assert users.get_session(planted) is None


def test_a_login_form_on_another_site_is_refused(web: TestClient, users: UserStore) -> None:
    users.add("mallory", PASSWORD, role="analyst")
    data = {"username": "mallory", "password": PASSWORD}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        refused = web.post("/login", data=data, headers=headers)
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
    same = web.post(
        "/login", data=data, headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    )
    assert same.status_code == 303
