"""Who may see which incident: analysts and admins all, owners only their departments' assets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hcm_soc.models.incident import AffectedAsset, Incident
from hcm_soc.store.users import InvalidUser, User, validate_role_departments
from hcm_soc.web.auth import AuthError, Principal

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def incident(*departments: str) -> Incident:
    return Incident(
        id="INC-2026-000001",
        title="SSH brute force",
        created=T0,
        updated=T0,
        assets=[AffectedAsset(id=f"asset-{d}", name=f"Asset {d}", department=d) for d in departments],
    )


def principal(role: str, *departments: str) -> Principal:
    user = User(username="u1", role=role, departments=list(departments))  # type: ignore[arg-type]
    return Principal.from_user(user, via="session", csrf="c")


def test_analyst_and_admin_see_every_incident() -> None:
    for role in ("analyst", "admin"):
        p = principal(role)
        assert p.can_see_incident(incident("so-gtvt"))
        assert p.can_see_incident(incident())
        assert p.can_see_department("so-yte")


def test_owner_sees_only_incidents_touching_its_departments() -> None:
    owner = principal("owner", "so-gtvt", "so-tnmt")
    assert owner.departments == ("so-gtvt", "so-tnmt")
    assert owner.can_see_incident(incident("so-gtvt"))
    assert owner.can_see_incident(incident("so-yte", "so-tnmt"))
    assert not owner.can_see_incident(incident("so-yte"))
    assert not owner.can_see_incident(incident())  # no asset: nobody's department
    assert owner.can_see_department("so-tnmt")
    assert not owner.can_see_department("so-yte")
    assert not owner.can_see_department(None)


def test_departments_mean_nothing_outside_the_owner_role() -> None:
    user = User(username="u2", role="analyst", departments=["so-gtvt"])
    assert Principal.from_user(user, via="token", csrf=None).departments == ()


def test_role_and_department_rules() -> None:
    assert validate_role_departments("owner", ["so-gtvt", "so-gtvt", "so-a"]) == ["so-a", "so-gtvt"]
    with pytest.raises(InvalidUser, match="at least one department"):
        validate_role_departments("owner", [])
    with pytest.raises(InvalidUser, match="owner role only"):
        validate_role_departments("analyst", ["so-gtvt"])
    with pytest.raises(InvalidUser, match="expected one of analyst, owner, admin"):
        validate_role_departments("root", [])
    with pytest.raises(InvalidUser, match="not an inventory department id"):
        validate_role_departments("owner", ["Sở GTVT"])


def test_user_names_are_checked() -> None:
    with pytest.raises(ValueError, match="lowercase letters"):
        User(username="Admin", role="admin")
    with pytest.raises(ValueError):
        User(username="a", role="admin")
    assert User(username="nguyen.van-a_1", role="admin").username == "nguyen.van-a_1"


def test_auth_error_carries_status_and_code() -> None:
    err = AuthError(403, "csrf", "missing CSRF token")
    assert (err.status, err.code, str(err)) == (403, "csrf", "missing CSRF token")
