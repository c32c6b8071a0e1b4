"""Linux authentication and account messages -> ECS, shaped like Filebeat's system/auth module.

Responsible for the text after the syslog header of sshd, sudo, su, login,
systemd-logind, the shadow-utils tools (useradd, usermod, userdel, groupadd,
groupdel, gpasswd, passwd, chpasswd, chage) and PAM lines from any program. Each
recogniser adds `event.*`, `user.*`, `source.*`, `group.*`, `related.*` and the
program's details under `system.auth.*` (where Filebeat keeps them, so queries
written for Filebeat data keep working) and never touches `message`.

User fields: `user.name` is who acted when the line says so (sudo's invoker, su's
caller, passwd's "changed by"); when it does not, it is the account the line is
about, as Filebeat does. `user.target.name` is always the account acted upon in
account management lines, `user.effective.name` the identity gained (sudo USER=,
su target).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hcm_soc.parsers.base import Event
from hcm_soc.parsers.netfilter import valid_ip

#: programs whose messages this module reads (PAM lines are read from any program)
AUTH_PROGRAMS = frozenset({
    "sshd", "sshd-session", "sudo", "su", "login", "systemd-logind", "useradd", "usermod", "userdel",
    "groupadd", "groupdel", "groupmod", "gpasswd", "passwd", "chpasswd", "chage",
})  # fmt: skip

_SSHD_AUTH = re.compile(
    r"(Accepted|Failed|Postponed) (\S+) for (?:(invalid user) ?)?(.*?) from (\S+) port (\d+)(?: ssh2)?(?:: (.+))?$"
)
_SSHD_INVALID = re.compile(r"[Ii]nvalid user (.*?) from (\S+?)(?: port (\d+))?$")
_SSHD_CLOSED = re.compile(
    r"Connection (closed|reset) by (?:(authenticating|invalid) user (.*?) )?(\S+) port (\d+)(?: \[preauth\])?$"
)
_SSHD_DISCONNECTED = re.compile(
    r"Disconnected from (?:(?:(authenticating|invalid) )?user (.*) )?(\S+) port (\d+)(?: \[preauth\])?$"
)
_SSHD_RECEIVED_DISCONNECT = re.compile(
    r"Received disconnect from (\S+) port (\d+):(\d+): ?(.*?)(?: \[preauth\])?$"
)
_SSHD_MAX_AUTH = re.compile(
    r"(?:error: )?maximum authentication attempts exceeded for (?:(invalid user) ?)?(.*?) from (\S+) port (\d+)"
)
_SSHD_TOO_MANY = re.compile(
    r"Disconnecting (?:(authenticating|invalid) )?user (.*) (\S+) port (\d+): Too many authentication failures"
)
_SSHD_PAM_MORE = re.compile(r"PAM (\d+) more authentication failures?; (.*)$")
_SSHD_PAM_ERROR = re.compile(
    r"error: PAM: Authentication failure for (?:(illegal user|invalid user) )?(.*?) from (\S+)$"
)
_SSHD_NO_ID = re.compile(r"Did not receive identification string from (\S+)(?: port (\d+))?")
_SSHD_BANNER = re.compile(r"banner exchange: Connection from (\S+) port (\d+): (.*)$")
_SSHD_NOT_ALLOWED = re.compile(r"User (.*?) from (\S+) not allowed because (.*)$")
_SSHD_NEGOTIATE = re.compile(r"Unable to negotiate with (\S+) port (\d+): (.*)$")
_PAM = re.compile(r"(pam_\w+)\(([^:)]+):(\w+)\): (.*)$")
_PAM_KV = re.compile(r"(\w+)=(\S*)")
_PAM_SESSION = re.compile(
    r"session (opened|closed) for user (\S+?)(?:\(uid=(\d+)\))?(?: by (\S*?)\(uid=(\d+)\))?$"
)
_PAM_PASSWORD = re.compile(r"password changed for (\S+)$")
_SUDO = re.compile(r"\s*(\S+) : (.*)$")
_SU_TO = re.compile(r"(FAILED SU )?\(to (\S+)\) (\S+) on (\S+)$")
_SU_OLD = re.compile(r"(Successful|FAILED) su for (\S+) by (\S+)$")
_SU_SIGN = re.compile(r"([+-]) (\S+) (\S+?):(\S+)$")
_LOGIND_NEW = re.compile(r"New session (\S+) of user (.+?)\.?$")
_LOGIND_REMOVED = re.compile(r"Removed session (\S+?)\.?$")
_LOGIN_FAILED = re.compile(r"FAILED LOGIN \((\d+)\) on '([^']*)' FOR '([^']*)', (.*)$")
_LOGIN_ROOT = re.compile(r"ROOT LOGIN +on '([^']*)'(?: FROM '([^']*)')?")
_NEW_USER = re.compile(
    r"new user: name=([^,]+), UID=(\d+), GID=(\d+), home=([^,]*), shell=([^,]*)(?:, from=(.*))?$"
)
_NEW_GROUP = re.compile(r"(?:new group|group added to \S+): name=([^,]+)(?:, GID=(\d+))?")
_GROUP_MEMBER = re.compile(r"(add|delete) '([^']+)' (?:to|from) (shadow )?group '([^']+)'")
_GPASSWD = re.compile(r"user (\S+) (added|removed) by (\S+) (?:to|from) group (\S+)")
_DELETE_USER = re.compile(r"delete user '([^']+)'")
_GROUP_REMOVED = re.compile(
    r"(?:removed (?:shadow )?group '([^']+)' owned by '[^']*'|group '([^']+)' removed)"
)
_USERMOD_RENAME = re.compile(r"change user name '([^']+)' to '([^']+)'")
_USERMOD_CHANGE = re.compile(r"(change|lock|unlock) user '([^']+)' (\w+)(?: from '([^']*)' to '([^']*)')?")
_PASSWD_BY = re.compile(r"password (?:for|of) '([^']+)' changed by '([^']+)'")
_CHAGE = re.compile(r"changed password expiry for (\S+)")
_FAILED_ADD = re.compile(r"failed adding (user|group) '([^']+)'")
_REPEATED = re.compile(r"message repeated (\d+) times: \[ ?(.*)\]$")


def _ev(event: Event, action: str, category: list[str], types: list[str], outcome: str | None = None) -> None:
    ev = event.get("event")
    if ev is None:
        event["event"] = ev = {}
    ev["action"] = action
    ev["category"] = category
    ev["type"] = types
    ev["kind"] = "event"
    if outcome:
        ev["outcome"] = outcome


def _related(event: Event, key: str, *values: str | None) -> None:
    bucket: list[str] = event.setdefault("related", {}).setdefault(key, [])
    for v in values:
        if v and v not in bucket:
            bucket.append(v)


def _user(event: Event, name: str | None, effective: str | None = None, target: str | None = None) -> None:
    """user.name, user.effective.name, user.target.name; all of them go to related.user."""
    if not (name or effective or target):
        return
    user = event.get("user")
    if user is None:
        event["user"] = user = {}
    if name:
        user["name"] = name
    if effective:
        user["effective"] = {"name": effective}
    if target:
        user["target"] = {"name": target}
    _related(event, "user", name, effective, target)


def _source(event: Event, address: str | None, port: str | None = None) -> None:
    """source.ip when `address` is an IP address, source.address always (a host name stays there)."""
    if not address:
        return
    src = event.setdefault("source", {})
    src["address"] = address
    ip = valid_ip(address)
    if ip:
        src["ip"] = ip
        _related(event, "ip", ip)
    else:
        src["domain"] = address
    if port:
        src["port"] = int(port)


def _ssh(event: Event, /, **fields: Any) -> None:
    """system.auth.ssh.* as Filebeat names them; None means not said by the line."""
    ssh = {k: v for k, v in fields.items() if v is not None}
    if ssh:
        event.setdefault("system", {}).setdefault("auth", {}).setdefault("ssh", {}).update(ssh)


# -- sshd ---------------------------------------------------------------------------------------------
def _sshd(event: Event, msg: str) -> bool:
    m = _SSHD_AUTH.match(msg)
    if m:
        result, method, invalid, user, address, port, signature = m.groups()
        if result == "Postponed":
            return False
        if result == "Accepted":
            _ev(event, "ssh_login", ["authentication", "session"], ["start"], "success")
        else:
            _ev(event, "ssh_login", ["authentication"], ["info"], "failure")
        _user(event, user)
        _source(event, address, port)
        _ssh(event, event=result, method=method, signature=signature, invalid_user=bool(invalid) or None)
        return True
    if msg.startswith(("Invalid user", "invalid user")):
        m = _SSHD_INVALID.match(msg)
        if m:
            _ev(event, "ssh_invalid_user", ["authentication"], ["info"], "failure")
            _user(event, m.group(1))
            _source(event, m.group(2), m.group(3))
            _ssh(event, event="Invalid", invalid_user=True)
            return True
        return False
    if msg.startswith("Connection "):
        m = _SSHD_CLOSED.match(msg)
        if m is None:
            return False
        kind, state, user, address, port = m.groups()
        if state:  # closed while logging in: the attempt failed
            _ev(event, f"ssh_connection_{kind}", ["authentication"], ["info"], "failure")
            _user(event, user)
            _ssh(event, invalid_user=True if state == "invalid" else None)
        else:
            _ev(event, f"ssh_connection_{kind}", ["network"], ["connection", "end"])
        _source(event, address, port)
        return True
    if msg.startswith("Disconnected from "):
        m = _SSHD_DISCONNECTED.match(msg)
        if m is None:
            return False
        state, user, address, port = m.groups()
        if state:
            _ev(event, "ssh_disconnect", ["authentication"], ["info"], "failure")
            _ssh(event, invalid_user=True if state == "invalid" else None)
        else:
            _ev(event, "ssh_disconnect", ["session"] if user else ["network"], ["end"])
        _user(event, user)
        _source(event, address, port)
        return True
    if msg.startswith("Received disconnect from "):
        m = _SSHD_RECEIVED_DISCONNECT.match(msg)
        if m is None:
            return False
        _ev(event, "ssh_disconnect", ["network"], ["connection", "end"])
        _source(event, m.group(1), m.group(2))
        _ssh(event, disconnect_code=int(m.group(3)), disconnect_reason=m.group(4) or None)
        return True
    m = _SSHD_MAX_AUTH.match(msg) or _SSHD_TOO_MANY.match(msg)
    if m:
        state, user, address, port = m.groups()
        _ev(event, "ssh_max_auth_attempts_exceeded", ["authentication"], ["info"], "failure")
        _user(event, user)
        _source(event, address, port)
        _ssh(event, invalid_user=True if state in ("invalid user", "invalid") else None)
        return True
    m = _SSHD_PAM_MORE.match(msg)
    if m:
        kv = dict(_PAM_KV.findall(m.group(2)))
        _ev(event, "ssh_pam_auth_failures", ["authentication"], ["info"], "failure")
        _user(event, kv.get("user"))
        _source(event, kv.get("rhost"))
        _ssh(event, failures=int(m.group(1)) + 1)  # "N more" follow the first one
        return True
    m = _SSHD_PAM_ERROR.match(msg)
    if m:
        _ev(event, "ssh_login", ["authentication"], ["info"], "failure")
        _user(event, m.group(2))
        _source(event, m.group(3))
        _ssh(event, event="Failed", invalid_user=True if m.group(1) else None)
        return True
    m = _SSHD_NO_ID.match(msg)
    if m:
        _ev(event, "ssh_no_identification", ["network"], ["connection"], "failure")
        _source(event, m.group(1), m.group(2))
        _ssh(event, dropped_ip=valid_ip(m.group(1)))
        return True
    if msg.startswith("error: kex_exchange_identification: "):
        _ev(event, "ssh_kex_error", ["network"], ["connection"], "failure")
        return True
    m = _SSHD_BANNER.match(msg) or _SSHD_NEGOTIATE.match(msg)
    if m:
        action = "ssh_kex_error" if msg.startswith("banner") else "ssh_negotiation_failed"
        _ev(event, action, ["network"], ["connection"], "failure")
        _source(event, m.group(1), m.group(2))
        return True
    m = _SSHD_NOT_ALLOWED.match(msg)
    if m:
        _ev(event, "ssh_user_not_allowed", ["authentication"], ["info"], "failure")
        _user(event, m.group(1))
        _source(event, m.group(2))
        return True
    return False


# -- PAM (any program) --------------------------------------------------------------------------------
def _pam(event: Event, msg: str) -> bool:
    m = _PAM.match(msg)
    if m is None:
        return False
    module, service, kind, text = m.groups()
    # a PAM line is recognised even when its text is not one of those below: module and service say
    # which program asked PAM what
    auth = event.setdefault("system", {}).setdefault("auth", {})
    auth["pam"] = {"module": module, "service": service, "type": kind}
    if text.startswith("authentication failure"):
        kv = dict(_PAM_KV.findall(text))
        _ev(event, "pam_authentication_failure", ["authentication"], ["info"], "failure")
        # logname/ruser is who asked, user= the account whose password was tried
        caller = kv.get("ruser") or kv.get("logname")
        if caller and kv.get("user") and caller != kv["user"]:
            _user(event, caller, target=kv["user"])
        else:
            _user(event, kv.get("user") or caller)
        _source(event, kv.get("rhost"))
        return True
    s = _PAM_SESSION.match(text)
    if s:
        state, account, uid, by, by_uid = s.groups()
        _ev(event, f"pam_session_{state}", ["session"], ["start" if state == "opened" else "end"], "success")
        if by:  # su/sudo: "for user root by nguyen.van.an(uid=1000)"
            _user(event, by, effective=account)
        else:
            _user(event, account)
        user = event["user"]
        if by:
            if uid:
                user["effective"]["id"] = uid
            user["id"] = by_uid
        elif uid:
            user["id"] = uid
        return True
    p = _PAM_PASSWORD.match(text)
    if p:
        _ev(event, "password_changed", ["iam"], ["user", "change"], "success")
        _user(event, p.group(1), target=p.group(1))
    return True


# -- sudo, su, login, systemd-logind ------------------------------------------------------------------
def _sudo(event: Event, msg: str) -> bool:
    m = _SUDO.match(msg)
    if m is None or "=" not in m.group(2):
        return False
    user, rest = m.groups()
    # COMMAND= is last and may itself contain " ; "
    cut = rest.find("COMMAND=")
    command = rest[cut + 8 :] if cut >= 0 else None
    head = rest[:cut] if cut >= 0 else rest
    fields: dict[str, str] = {}
    error = None
    for part in head.split(" ; "):
        key, sep, value = part.strip().partition("=")
        if sep and key.isupper():
            fields[key] = value
        elif part.strip() and error is None and not fields:
            error = part.strip()
    if not fields and command is None:
        return False
    sudo: dict[str, Any] = {k.lower(): v for k, v in fields.items()}
    if command is not None:
        sudo["command"] = command
    if error:
        sudo["error"] = error
    event.setdefault("system", {}).setdefault("auth", {})["sudo"] = sudo
    _user(event, user, effective=fields.get("USER"))
    proc = event.setdefault("process", {})
    if command is not None:
        proc["command_line"] = command
    if "PWD" in fields:
        proc["working_directory"] = fields["PWD"]
    if error is None:
        _ev(event, "sudo_command", ["process"], ["start"], "success")
    elif "incorrect password attempt" in error:
        _ev(event, "sudo_auth_failure", ["authentication"], ["info"], "failure")
    elif "NOT in sudoers" in error:
        _ev(event, "sudo_not_in_sudoers", ["process"], ["start"], "failure")
    else:
        _ev(event, "sudo_denied", ["process"], ["start"], "failure")
    return True


def _su(event: Event, msg: str) -> bool:
    m = _SU_TO.match(msg)
    if m:
        failed, target, caller, tty = m.groups()
    elif m := _SU_OLD.match(msg):
        result, target, caller = m.groups()
        failed, tty = result == "FAILED", None
    elif m := _SU_SIGN.match(msg):
        sign, tty, caller, target = m.groups()
        failed = sign == "-"
    else:
        return False
    if failed:
        _ev(event, "su_auth_failure", ["authentication"], ["info"], "failure")
    else:
        _ev(event, "su_session", ["authentication", "session"], ["start"], "success")
    _user(event, caller, effective=target)
    if tty:
        event.setdefault("system", {}).setdefault("auth", {})["su"] = {"tty": tty}
    return True


def _logind(event: Event, msg: str) -> bool:
    m = _LOGIND_NEW.match(msg)
    if m:
        _ev(event, "logind_session_new", ["session"], ["start"], "success")
        _user(event, m.group(2))
    elif m := _LOGIND_REMOVED.match(msg):
        _ev(event, "logind_session_removed", ["session"], ["end"])
    else:
        return False
    event.setdefault("system", {}).setdefault("auth", {})["session"] = {"id": m.group(1)}
    return True


def _login(event: Event, msg: str) -> bool:
    m = _LOGIN_FAILED.match(msg)
    if m:
        _ev(event, "login_failure", ["authentication"], ["info"], "failure")
        _user(event, m.group(3))
        event.setdefault("system", {}).setdefault("auth", {})["login"] = {
            "tty": m.group(2),
            "failures": int(m.group(1)),
        }
        return True
    m = _LOGIN_ROOT.match(msg)
    if m:
        _ev(event, "login_root", ["authentication", "session"], ["start"], "success")
        _user(event, "root")
        _source(event, m.group(2))
        event.setdefault("system", {}).setdefault("auth", {})["login"] = {"tty": m.group(1)}
        return True
    return False


# -- shadow-utils: accounts and groups ----------------------------------------------------------------
def _iam(event: Event, msg: str) -> bool:
    m = _NEW_USER.match(msg)
    if m:
        name, uid, gid, home, shell, origin = m.groups()
        _ev(event, "user_created", ["iam"], ["user", "creation"], "success")
        _user(event, name, target=name)
        event["user"]["id"] = uid
        event["user"]["target"]["id"] = uid
        event["group"] = {"id": gid}
        useradd = {"home": home, "shell": shell}
        if origin:
            useradd["from"] = origin
        event.setdefault("system", {}).setdefault("auth", {})["useradd"] = useradd
        return True
    m = _NEW_GROUP.match(msg)
    if m:
        _ev(event, "group_created", ["iam"], ["group", "creation"], "success")
        event["group"] = {"name": m.group(1)} | ({"id": m.group(2)} if m.group(2) else {})
        return True
    m = _GROUP_MEMBER.match(msg)
    if m:
        op, name, _shadow, group = m.groups()
        _ev(event, "user_added_to_group" if op == "add" else "user_removed_from_group", ["iam"],
            ["group", "change"], "success")  # fmt: skip
        _user(event, name, target=name)
        event["group"] = {"name": group}
        return True
    m = _GPASSWD.match(msg)
    if m:
        name, op, actor, group = m.groups()
        _ev(event, "user_added_to_group" if op == "added" else "user_removed_from_group", ["iam"],
            ["group", "change"], "success")  # fmt: skip
        _user(event, actor, target=name)
        event["group"] = {"name": group}
        return True
    m = _DELETE_USER.match(msg)
    if m:
        _ev(event, "user_deleted", ["iam"], ["user", "deletion"], "success")
        _user(event, m.group(1), target=m.group(1))
        return True
    m = _GROUP_REMOVED.match(msg)
    if m:
        _ev(event, "group_deleted", ["iam"], ["group", "deletion"], "success")
        event["group"] = {"name": m.group(1) or m.group(2)}
        return True
    m = _USERMOD_RENAME.match(msg)
    if m:
        _ev(event, "user_renamed", ["iam"], ["user", "change"], "success")
        _user(event, m.group(2), target=m.group(2))
        event["user"]["changes"] = {"name": m.group(2)}
        event["user"]["target"]["name"] = m.group(1)
        _related(event, "user", m.group(1))
        return True
    m = _USERMOD_CHANGE.match(msg)
    if m:
        op, name, what, old, new = m.groups()
        action = {"lock": "user_locked", "unlock": "user_unlocked"}.get(op)
        if action is None:
            action = "password_changed" if what == "password" else "user_changed"
        _ev(event, action, ["iam"], ["user", "change"], "success")
        _user(event, name, target=name)
        change: dict[str, str] = {"attribute": what}
        if old is not None:
            change |= {"from": old, "to": new or ""}
        event.setdefault("system", {}).setdefault("auth", {})["usermod"] = change
        return True
    m = _PASSWD_BY.match(msg)
    if m:
        _ev(event, "password_changed", ["iam"], ["user", "change"], "success")
        _user(event, m.group(2), target=m.group(1))
        return True
    m = _CHAGE.match(msg)
    if m:
        _ev(event, "password_expiry_changed", ["iam"], ["user", "change"], "success")
        _user(event, m.group(1), target=m.group(1))
        return True
    m = _FAILED_ADD.match(msg)
    if m:
        kind, name = m.groups()
        _ev(event, f"{kind}_created", ["iam"], [kind, "creation"], "failure")
        if kind == "user":
            _user(event, name, target=name)
        else:
            event["group"] = {"name": name}
        return True
    return False


_BY_PROGRAM: dict[str, Callable[[Event, str], bool]] = {
    "sshd": _sshd,
    "sshd-session": _sshd,  # OpenSSH 9.8+ logs authentication from a separate binary
    "sudo": _sudo,
    "su": _su,
    "login": _login,
    "systemd-logind": _logind,
}


def enrich_auth(event: Event, message: str) -> bool:
    """Add the ECS fields of an authentication/account `message` (the syslog MSG) to `event`.

    The program is `event["process"]["name"]`. Returns True when the line was recognised;
    `message` itself is never changed."""
    program = event.get("process", {}).get("name", "")
    repeated = _REPEATED.match(message) if message.startswith("message repeated ") else None
    if repeated:  # rsyslog's "message repeated N times: [ … ]": the inner line says what happened
        message = repeated.group(2)
    if message.startswith("pam_"):
        handler: Callable[[Event, str], bool] | None = _pam
    else:
        handler = _BY_PROGRAM.get(program, _iam if program in AUTH_PROGRAMS else None)
    if handler is None or not handler(event, message):
        return False
    if repeated:
        event.setdefault("system", {}).setdefault("auth", {})["repeated"] = int(repeated.group(1))
    return True
