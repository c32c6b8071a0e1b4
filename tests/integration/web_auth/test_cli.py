"""`hcm-soc users …` as a person runs it (a subprocess of the real entry point, with the users
group added as the lead registers it): exit codes, what goes to stdout, the audit trail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from elasticsearch import Elasticsearch

from hcm_soc.store.audit import AuditLog
from hcm_soc.store.names import IndexNames
from hcm_soc.store.users import UserStore
from tests.integration.web_auth.conftest import PASSWORD

INVENTORY = Path(__file__).resolve().parents[3] / "inventory" / "city-systems.yml"

# the real `hcm-soc` root (global options, error → exit code mapping) with the users group
ENTRY = (
    "import typer\n"
    "from hcm_soc.cli import main as m\n"
    "from hcm_soc.cli.users import app\n"
    "if not any(g.name == 'users' for g in m.app.registered_groups):\n"
    "    m.app.add_typer(app, name='users')\n"
    "m.main()\n"
)


def hcm(names: IndexNames, es_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HCM_SOC_")}
    env.update(
        HCM_SOC_ES_URL=es_url,
        HCM_SOC_INDEX_PREFIX=names.prefix,
        HCM_SOC_INDEX_NAMESPACE=names.namespace,
        USER="tester",
        HCM_SOC_PATHS_INVENTORY=str(INVENTORY),
    )
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_users_lifecycle(es: Elasticsearch, es_url: str, installed: IndexNames) -> None:
    add = hcm(
        installed,
        es_url,
        "users",
        "add",
        "owner.gtvt",
        "--role",
        "owner",
        "--department",
        "sogtvt",
        "--display-name",
        "Sở GTVT",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert add.returncode == 0, add.stderr
    assert "user owner.gtvt added" in add.stderr and add.stdout == ""
    assert "warning" not in add.stderr  # sogtvt is a department of the inventory
    typo = hcm(
        installed,
        es_url,
        "users",
        "add",
        "owner.typo",
        "--role",
        "owner",
        "--department",
        "so-gtvt",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert typo.returncode == 0, typo.stderr
    assert "warning: so-gtvt: not a department of the inventory" in typo.stderr
    again = hcm(
        installed, es_url, "users", "add", "owner.gtvt", "--role", "admin", "--password-stdin", stdin=PASSWORD
    )
    assert again.returncode == 2 and "exists already" in again.stderr
    weak = hcm(
        installed, es_url, "users", "add", "admin1", "--role", "admin", "--password-stdin", stdin="short\n"
    )
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    no_dep = hcm(
        installed, es_url, "users", "add", "owner2", "--role", "owner", "--password-stdin", stdin=PASSWORD
    )
    assert no_dep.returncode == 2 and "--department" in no_dep.stderr
    bad_role = hcm(
        installed, es_url, "users", "add", "x1", "--role", "root", "--password-stdin", stdin=PASSWORD
    )
    assert bad_role.returncode == 2

    listed = hcm(installed, es_url, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["username"], r["role"], r["departments"]) for r in rows] == [
        ("owner.gtvt", "owner", ["sogtvt"]),
        ("owner.typo", "owner", ["so-gtvt"]),
    ]
    assert "password" not in listed.stdout and "argon2" not in listed.stdout
    table = hcm(installed, es_url, "users", "list")
    assert "owner.gtvt" in table.stdout and "active" in table.stdout

    token = hcm(installed, es_url, "users", "token", "owner.gtvt", "--name", "ack-bot")
    assert token.returncode == 0, token.stderr
    value = token.stdout.strip()
    assert value.startswith("hcm_") and len(value) == 47 and "shown this once" in token.stderr
    users = UserStore(es, installed)
    user = users.verify_token(value)
    assert user is not None and user.username == "owner.gtvt"
    tokens = hcm(installed, es_url, "users", "tokens", "owner.gtvt")
    assert "ack-bot" in tokens.stdout and value not in tokens.stdout and value[:8] in tokens.stdout

    new_password = PASSWORD + " mới"
    passwd = hcm(
        installed, es_url, "users", "passwd", "owner.gtvt", "--password-stdin", stdin=new_password + "\n"
    )
    assert passwd.returncode == 0, passwd.stderr
    assert users.verify_password("owner.gtvt", new_password) is not None
    missing = hcm(installed, es_url, "users", "passwd", "nobody", "--password-stdin", stdin=new_password)
    assert missing.returncode == 2 and "no user 'nobody'" in missing.stderr

    assert hcm(installed, es_url, "users", "disable", "owner.gtvt").returncode == 0
    assert users.verify_token(value) is None
    assert json.loads(hcm(installed, es_url, "users", "list", "--json").stdout)[0]["disabled"] is True
    assert hcm(installed, es_url, "users", "enable", "owner.gtvt").returncode == 0
    assert users.verify_token(value) is not None
    revoke = hcm(installed, es_url, "users", "revoke", "owner.gtvt", "ack-bot")
    assert revoke.returncode == 0, revoke.stderr
    assert users.verify_token(value) is None
    assert hcm(installed, es_url, "users", "revoke", "owner.gtvt", "ack-bot").returncode == 2

    es.indices.refresh(index=installed.audit)
    entries = AuditLog(es, installed).list()
    assert {e.actor for e in entries} == {"cli:tester"}
    assert sorted(e.action for e in entries) == sorted(
        [
            "user.add",
            "user.add",
            "token.create",
            "user.password",
            "user.disable",
            "user.enable",
            "token.revoke",
        ]
    )
    assert all(value not in str(e.details) and PASSWORD not in e.message for e in entries)


def test_unreachable_elasticsearch_exits_3() -> None:
    done = hcm(IndexNames(prefix="unreachable"), "http://127.0.0.1:9", "users", "list")
    assert done.returncode == 3, done.stderr
    assert "Elasticsearch" in done.stderr
