"""A signed-in person changes their own password: the current one is asked again, the policy holds,
their other sessions end and the one in use stays; each attempt is audited."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.integration.web_ui.conftest import CSRF_META, World

OLD = "cây đa bến nước sân đình"
NEW = "mưa Sài Gòn chiều thứ bảy"


def _login(world: World, password: str) -> tuple[TestClient, str]:
    http = TestClient(world.app)
    resp = http.post(
        "/login",
        data={"username": "pw-user", "password": password, "next": "/account"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    page = http.get("/account")
    assert page.status_code == 200 and 'id="password-form"' in page.text
    found = CSRF_META.search(page.text)
    assert found
    return http, found.group(1)


def test_changing_ones_own_password(world: World) -> None:
    world.services.users.add("pw-user", OLD, role="analyst")
    other, _ = _login(world, OLD)  # another browser of the same person
    http, csrf = _login(world, OLD)

    def change(current: str, new: str, confirm: str) -> object:
        data = {"csrf_token": csrf, "current": current, "new": new, "confirm": confirm}
        return http.post("/account/password", data=data, follow_redirects=False)

    wrong = change("not the password at all", NEW, NEW)
    assert wrong.status_code == 400 and "Mật khẩu hiện tại không đúng." in wrong.text
    mismatch = change(OLD, NEW, NEW + "!")
    assert mismatch.status_code == 400 and "không giống nhau" in mismatch.text
    weak = change(OLD, "short", "short")
    assert weak.status_code == 422
    no_csrf = http.post(
        "/account/password", data={"current": OLD, "new": NEW, "confirm": NEW}, follow_redirects=False
    )
    assert no_csrf.status_code == 403
    assert world.services.users.verify_password("pw-user", OLD) is not None  # nothing changed so far

    done = change(OLD, NEW, NEW)
    assert done.status_code == 303 and done.headers["location"].startswith("/account?msg=password_changed")
    assert world.services.users.verify_password("pw-user", NEW) is not None
    assert world.services.users.verify_password("pw-user", OLD) is None
    assert http.get("/account").status_code == 200  # this session stays
    assert other.get("/account", follow_redirects=False).status_code == 303  # the other one ended
    outcomes = [
        e.outcome
        for e in world.services.audit.list(action="user.password", limit=20)
        if "pw-user" in e.message
    ]
    assert outcomes.count("failure") >= 3 and outcomes.count("success") == 1
