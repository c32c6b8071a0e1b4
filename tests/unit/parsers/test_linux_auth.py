"""sshd, sudo, su, PAM, logind and account-management lines -> ECS (golden files and edge cases)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from hcm_soc.parsers.base import Event
from hcm_soc.parsers.linux_auth import AUTH_PROGRAMS, enrich_auth
from hcm_soc.parsers.syslog import parse_syslog
from tests.unit.parsers import GoldenCase, field_diff, load_golden

AUTH = load_golden("syslog", "auth")
ACCOUNTS = load_golden("syslog", "accounts")


def enrich(program: str, message: str) -> tuple[bool, Event]:
    event: Event = {"process": {"name": program}, "message": message}
    return enrich_auth(event, message), event


@pytest.mark.parametrize("case", [*AUTH, *ACCOUNTS], ids=lambda c: c.id)
def test_golden(case: GoldenCase) -> None:
    assert case.fields is not None
    problems = field_diff(parse_syslog(case.raw, case.ctx), case.fields)
    assert not problems, f"{case.id}: {case.raw!r}\n" + "\n".join(problems)


def test_golden_files_cover_every_action_the_rules_need() -> None:
    """The samples exercise each recogniser (a new action without a sample fails here)."""
    actions = Counter(case.fields.get("event.action") for case in [*AUTH, *ACCOUNTS] if case.fields)
    for action in (
        "ssh_login", "ssh_invalid_user", "ssh_connection_closed", "ssh_connection_reset", "ssh_disconnect",
        "ssh_max_auth_attempts_exceeded", "ssh_pam_auth_failures", "ssh_no_identification", "ssh_kex_error",
        "ssh_user_not_allowed", "ssh_negotiation_failed", "sudo_command", "sudo_auth_failure",
        "sudo_not_in_sudoers", "sudo_denied", "su_session", "su_auth_failure", "pam_authentication_failure",
        "pam_session_opened", "pam_session_closed", "logind_session_new", "logind_session_removed",
        "login_failure", "login_root", "user_created", "group_created", "user_added_to_group",
        "user_removed_from_group", "user_changed", "user_locked", "user_unlocked", "user_renamed",
        "password_changed", "user_deleted", "group_deleted", "password_expiry_changed",
    ):  # fmt: skip
        assert actions[action] >= 1, action


@pytest.mark.parametrize(
    ("message", "outcome", "user", "ip", "port", "method"),
    [
        ("Accepted password for nguyen.van.an from 10.10.1.32 port 41582 ssh2", "success", "nguyen.van.an",
         "10.10.1.32", 41582, "password"),
        ("Failed password for invalid user  from 203.0.113.45 port 52144 ssh2", "failure", None, "203.0.113.45",
         52144, "password"),
        ("Failed password for invalid user a b from 203.0.113.45 port 1 ssh2", "failure", "a b", "203.0.113.45",
         1, "password"),
        ("Accepted publickey for root from ::1 port 2222", "success", "root", "::1", 2222, "publickey"),
    ],
)  # fmt: skip
def test_ssh_login_fields(
    message: str, outcome: str, user: str | None, ip: str, port: int, method: str
) -> None:
    ok, event = enrich("sshd", message)
    assert ok
    assert event["event"]["action"] == "ssh_login"
    assert event["event"]["outcome"] == outcome
    assert event.get("user", {}).get("name") == user
    assert (event["source"]["ip"], event["source"]["port"]) == (ip, port)
    assert event["system"]["auth"]["ssh"]["method"] == method
    assert event["message"] == message


def test_host_name_in_rhost_never_reaches_an_ip_field() -> None:
    ok, event = enrich("sshd", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
                               "ruser= rhost=may-quet.example.net  user=root")  # fmt: skip
    assert ok
    assert "ip" not in event["source"]
    assert event["source"] == {"address": "may-quet.example.net", "domain": "may-quet.example.net"}
    assert "ip" not in event.get("related", {})


@pytest.mark.parametrize(
    ("program", "message"),
    [
        ("sshd", "Server listening on :: port 22."),
        ("sshd", "Postponed publickey for nguyen.van.an from 10.10.1.32 port 41582 ssh2 [preauth]"),
        ("sshd", 'Connection from 10.10.1.32 port 41582 on 10.10.20.11 port 22 rdomain ""'),
        ("sudo", "unable to resolve host so-gtvt-db01: Name or service not known"),
        ("su", "pam_authenticate: Authentication failure"),
        ("useradd", "something useradd never says"),
        ("nginx", "Accepted password for root from 1.2.3.4 port 22 ssh2"),
        ("systemd-logind", "Watching system buttons on /dev/input/event0 (Power Button)"),
    ],
)
def test_unrecognised_lines_add_nothing(program: str, message: str) -> None:
    ok, event = enrich(program, message)
    assert not ok
    assert event == {"process": {"name": program}, "message": message}


def test_pam_line_of_an_unknown_kind_still_names_module_and_service() -> None:
    ok, event = enrich("sshd", "pam_unix(sshd:auth): check pass; user unknown")
    assert ok
    assert event["system"]["auth"]["pam"] == {"module": "pam_unix", "service": "sshd", "type": "auth"}
    assert "event" not in event


def test_repeated_message_is_read_inside_and_counted() -> None:
    ok, event = enrich("sudo", "message repeated 2 times: [ nguyen.van.an : TTY=pts/0 ; PWD=/ ; USER=root ; "
                               "COMMAND=/usr/bin/id]")  # fmt: skip
    assert ok
    assert event["event"]["action"] == "sudo_command"
    assert event["process"]["command_line"] == "/usr/bin/id"
    assert event["system"]["auth"]["repeated"] == 2


def test_sudo_command_keeps_semicolons_and_equals_signs() -> None:
    ok, event = enrich(
        "sudo", "ops : TTY=unknown ; PWD=/ ; USER=root ; COMMAND=/bin/sh -c 'a=1; echo $a ; id'"
    )
    assert ok
    assert event["process"]["command_line"] == "/bin/sh -c 'a=1; echo $a ; id'"
    assert event["system"]["auth"]["sudo"]["tty"] == "unknown"


def test_related_users_are_unique() -> None:
    ok, event = enrich("sudo", "root : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/id")
    assert ok
    assert event["related"]["user"] == ["root"]


def test_programs_table() -> None:
    assert {"sshd", "sudo", "su", "useradd", "usermod", "userdel", "groupadd", "passwd", "chpasswd",
            "systemd-logind"} <= AUTH_PROGRAMS  # fmt: skip


def test_vietnamese_text_in_sudo_command_is_unchanged() -> None:
    command = "/usr/bin/cp 'Báo cáo tháng 11.xlsx' /srv/chia-sẻ/Phòng Kế hoạch/"
    ok, event = enrich(
        "sudo", f"tran.thi.binh : TTY=pts/1 ; PWD=/home/tran.thi.binh ; USER=root ; COMMAND={command}"
    )
    assert ok
    values: dict[str, Any] = event["process"]
    assert values["command_line"] == command
