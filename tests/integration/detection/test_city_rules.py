"""The city's own rules (`rules/`) against real parser output in the real Elasticsearch.

For every shipped rule there is a positive and a negative sample set. The samples are made by
running OUR parsers on raw records: Linux and firewall events from syslog lines through
`get_parser("syslog")`, web events from access-log lines through the nginx/apache parsers,
Windows events from EVTX records (shaped like the `evtx` reader's output, modelled on
EVTX-ATTACK-SAMPLES recordings) through the EVTX parser, DNS events from DNS query bytes through
the network collector's decoder, flow records from packets through its flow table.

Each rule runs through the real loader, compiler and matcher / correlation search over a
scratch store (`hcm_soc.detection.scratch`). Negatives and positives are loaded as separate
slices of `event.ingested`, so each run sees exactly one sample set. A detection rule must
match every positive event and no negative one; a correlation must fire for the expected group
on the positives and not at all on the negatives.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.collectors.network.dns import DnsPairing, parse_dns
from hcm_soc.collectors.network.flows import FlowTable
from hcm_soc.collectors.network.packets import Packet
from hcm_soc.parsers.base import Event, ParseContext, SourceInfo, finish
from hcm_soc.parsers.evtx import parse_evtx_record
from hcm_soc.parsers.registry import get_parser

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[3] / "rules"

T0 = datetime(2026, 11, 26, 1, 0, 0, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _envelope(event: Event, original: str, dataset: str, module: str, received: datetime) -> Event:
    return finish(
        event, original, SourceInfo(name=f"test-{dataset}", dataset=dataset, module=module), received
    )


# -- syslog (linux auth, sudo, accounts, firewall) ------------------------------------------------------
def syslog(
    messages: Iterable[tuple[float, str, str]],
    *,
    host: str = "sotttt-web01",
    t0: datetime = T0,
    dataset: str = "system.auth",
) -> list[Event]:
    """(seconds after t0, program[pid], message) -> events, through the syslog parser."""
    spec = get_parser("syslog")
    ctx = ParseContext(dataset=dataset, received=t0 + timedelta(hours=1))
    out = []
    for offset, tag, msg in messages:
        line = f"<38>{_iso(t0 + timedelta(seconds=offset))} {host} {tag}: {msg}"
        out.append(_envelope(spec.parse(line, ctx), line, dataset, spec.module, ctx.received))
    return out


def ssh_failed(ip: str, offsets: Iterable[float], user: str = "admin", t0: datetime = T0) -> list[Event]:
    return syslog(
        [
            (s, "sshd[2211]", f"Failed password for invalid user {user} from {ip} port {40000 + int(s)} ssh2")
            for s in offsets
        ],
        t0=t0,
    )


def ssh_accepted(ip: str, offset: float, user: str = "nguyen.van.an", t0: datetime = T0) -> list[Event]:
    return syslog([(offset, "sshd[2212]", f"Accepted password for {user} from {ip} port 41582 ssh2")], t0=t0)


def firewall(
    entries: Iterable[tuple[float, str, str, int]],
    *,
    action: str = "BLOCK",
    proto: str = "TCP",
    t0: datetime = T0,
) -> list[Event]:
    """(seconds, source ip, destination ip, destination port) -> UFW kernel lines -> events."""
    lines = [
        (
            s,
            "kernel",
            f"[UFW {action}] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:08:00 SRC={src} DST={dst} "
            f"LEN=60 TOS=0x00 PREC=0x00 TTL=51 ID=54321 DF PROTO={proto} SPT={50000 + n} DPT={port} "
            "WINDOW=64240 RES=0x00 SYN URGP=0",
        )
        for n, (s, src, dst, port) in enumerate(entries)
    ]
    return syslog(lines, host="hcm-gw01", t0=t0, dataset="network.firewall")


# -- web -------------------------------------------------------------------------------------------------
def web(
    requests: Iterable[tuple[str, str, int, str]],
    *,
    fmt: str = "nginx",
    ip: str = "198.51.100.23",
    t0: datetime = T0,
) -> list[Event]:
    """(method, target, status, user agent) -> access-log lines -> events (nginx or apache)."""
    spec = get_parser(fmt)
    dataset = f"{fmt}.access"
    ctx = ParseContext(dataset=dataset)
    out = []
    for n, (method, target, status, agent) in enumerate(requests):
        when = (t0 + timedelta(seconds=n)).astimezone(ctx.timezone).strftime("%d/%b/%Y:%H:%M:%S %z")
        line = f'{ip} - - [{when}] "{method} {target} HTTP/1.1" {status} 512 "-" "{agent}"'
        out.append(_envelope(spec.parse(line, ctx), line, dataset, spec.module, ctx.received))
    return out


BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"


# -- Windows (EVTX records) ------------------------------------------------------------------------------
def _record(
    record_id: int,
    event_id: int,
    channel: str,
    provider: str,
    data: Mapping[str, Any] | None,
    *,
    t: datetime,
    computer: str = "STC-DC01.sotaichinh.hcm.local",
    user_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    system = {
        "Provider": {"#attributes": {"Name": provider}},
        "EventID": event_id,
        "Version": 0,
        "Level": 4,
        "Task": 0,
        "Opcode": 0,
        "Keywords": "0x8020000000000000",
        "TimeCreated": {"#attributes": {"SystemTime": _iso(t)}},
        "EventRecordID": record_id,
        "Execution": {"#attributes": {"ProcessID": 640, "ThreadID": 712}},
        "Channel": channel,
        "Computer": computer,
        "Security": None,
    }
    event: dict[str, Any] = {"System": system}
    if data is not None:
        event["EventData"] = dict(data)
    if user_data is not None:
        event["UserData"] = dict(user_data)
    return {"event_record_id": record_id, "timestamp": _iso(t), "data": {"Event": event}}


def windows(records: Iterable[dict[str, Any]]) -> list[Event]:
    ctx = ParseContext(dataset="windows.evtx")
    out = []
    for rec in records:
        original = str(rec["data"])
        out.append(_envelope(parse_evtx_record(rec, ctx), original, "windows.evtx", "windows", ctx.received))
    return out


SYSMON = "Microsoft-Windows-Sysmon/Operational"


def process_creation(
    record_id: int, image: str, command_line: str, *, security: bool = False, t: datetime = T0
) -> dict[str, Any]:
    """A Sysmon 1 record, or a Security 4688 record when `security`."""
    if security:
        return _record(
            record_id,
            4688,
            "Security",
            "Microsoft-Windows-Security-Auditing",
            {
                "SubjectUserSid": "S-1-5-21-1587066498-1489273250-1035260531-1108",
                "SubjectUserName": "tran.thi.binh",
                "SubjectDomainName": "SOTAICHINH",
                "SubjectLogonId": "0x3e7",
                "NewProcessId": "0x1fc",
                "NewProcessName": image,
                "TokenElevationType": "%%1936",
                "ProcessId": "0x278",
                "CommandLine": command_line,
                "ParentProcessName": "C:\\Windows\\explorer.exe",
            },
            t=t,
        )
    return _record(
        record_id,
        1,
        SYSMON,
        "Microsoft-Windows-Sysmon",
        {
            "RuleName": "-",
            "UtcTime": t.strftime("%Y-%m-%d %H:%M:%S.000"),
            "ProcessGuid": "365ABB72-7C01-5CC4-0000-00102B3E0C00",
            "ProcessId": 2680,
            "Image": image,
            "CommandLine": command_line,
            "CurrentDirectory": "C:\\Users\\tran.thi.binh\\",
            "User": "SOTAICHINH\\tran.thi.binh",
            "LogonId": "0xf4be",
            "IntegrityLevel": "High",
            "ParentProcessGuid": "365ABB72-7ACC-5CC4-0000-0010B2470300",
            "ParentProcessId": 2772,
            "ParentImage": "C:\\Windows\\explorer.exe",
            "ParentCommandLine": "C:\\Windows\\Explorer.EXE",
            "OriginalFileName": image.rsplit("\\", 1)[-1],
        },
        t=t,
    )


def security_event(
    record_id: int, event_id: int, data: Mapping[str, Any], t: datetime = T0
) -> dict[str, Any]:
    return _record(record_id, event_id, "Security", "Microsoft-Windows-Security-Auditing", data, t=t)


def log_cleared(record_id: int, t: datetime = T0) -> dict[str, Any]:
    return _record(
        record_id,
        1102,
        "Security",
        "Microsoft-Windows-Eventlog",
        None,
        t=t,
        user_data={
            "LogFileCleared": {
                "SubjectUserSid": "S-1-5-21-1587066498-1489273250-1035260531-1108",
                "SubjectUserName": "admin01",
                "SubjectDomainName": "SOTAICHINH",
                "SubjectLogonId": "0xaf855",
            }
        },
    )


def system_event(record_id: int, event_id: int, data: Mapping[str, Any], t: datetime = T0) -> dict[str, Any]:
    return _record(record_id, event_id, "System", "Service Control Manager", data, t=t)


# -- network collector: DNS and flows ----------------------------------------------------------------------
def _dns_query_bytes(query_id: int, name: str, qtype: int = 1) -> bytes:
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return header + labels + struct.pack("!HH", qtype, 1)


def dns(
    queries: Iterable[tuple[float, str, str]], *, t0: datetime = T0, server: str = "10.10.1.53"
) -> list[Event]:
    """(seconds, client ip, query name) -> DNS query bytes -> the collector's DNS decoder -> events."""
    emitted: list[Event] = []
    pairing = DnsPairing(on_emit=emitted.append)
    for n, (s, client, name) in enumerate(queries):
        msg = parse_dns(_dns_query_bytes(n + 1, name))
        assert msg is not None, name
        pairing.add((t0 + timedelta(seconds=s)).timestamp(), client, 40000 + n, server, 53, "udp", msg)
    pairing.flush()
    received = t0 + timedelta(hours=1)
    return [
        _envelope(e, str(e["dns"]["question"]["name"]), "network.dns", "network", received) for e in emitted
    ]


def flows(
    entries: Iterable[tuple[float, str, str, int]], *, transport: str = "tcp", t0: datetime = T0
) -> list[Event]:
    """(seconds, source ip, destination ip, destination port) -> packets (TCP: SYN + SYN-ACK) through
    the network collector's flow table -> network.flow records (direction from the city ranges)."""
    emitted: list[Event] = []
    table = FlowTable(emitted.append)
    for n, (s, src, dst, port) in enumerate(entries):
        ts = (t0 + timedelta(seconds=s)).timestamp()
        sport = 51000 + n
        if transport == "tcp":
            table.add(Packet(ts, 4, src, dst, 6, sport, port, tcp_flags=0x02, length=60))
            table.add(Packet(ts + 0.01, 4, dst, src, 6, port, sport, tcp_flags=0x12, length=60))
        elif transport == "udp":
            table.add(Packet(ts, 4, src, dst, 17, sport, port, length=80, payload=b"q" * 52))
        else:
            table.add(Packet(ts, 4, src, dst, 1, length=84, icmp_type=8, icmp_code=0))
    table.flush()
    return [
        _envelope(e, json.dumps(e["hcm"]["flow"]["id_key"]), "network.flow", "network", t0) for e in emitted
    ]


# -- the cases: one per shipped rule ------------------------------------------------------------------------
ATTACKER = "203.0.113.7"
OTHER = "198.51.100.9"
SLOW = "192.0.2.77"
CLIENT = "10.10.5.5"
PORTAL = "10.10.20.11"
PS = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"
Builder = Callable[[datetime], list[Event]]


@dataclass(frozen=True)
class Case:
    """Samples of one rule, each built at a given time; `group` = what a correlation groups by."""

    positives: Builder
    negatives: Builder
    group: Mapping[str, Any] | None = None


def _sudo(t0: datetime, *lines: str) -> list[Event]:
    return syslog([(n, "sudo", line) for n, line in enumerate(lines)], t0=t0)


def _accounts(t0: datetime, *lines: tuple[str, str]) -> list[Event]:
    return syslog([(n, tag, msg) for n, (tag, msg) in enumerate(lines)], t0=t0, host="so-gtvt-db01")


def _get(targets: Iterable[str], agent: str = BROWSER, fmt: str = "nginx") -> Builder:
    return lambda t0: web([("GET", t, 200, agent) for t in targets], fmt=fmt, t0=t0)


def _every(n: int, step: float) -> list[float]:
    return [i * step for i in range(n)]


CASES: dict[str, Case] = {
    # -- linux ------------------------------------------------------------------------------------------------
    "linux/ssh_failed_login": Case(
        lambda t0: (
            ssh_failed(ATTACKER, [0, 3], t0=t0)
            + syslog(
                [(5, "sshd[2213]", f"error: PAM: Authentication failure for root from {ATTACKER}")], t0=t0
            )
        ),
        lambda t0: (
            ssh_accepted(ATTACKER, 0, t0=t0)
            + syslog([(1, "sshd[2214]", f"Invalid user test from {ATTACKER} port 4444")], t0=t0)
            + _sudo(
                t0,
                "tran.thi.binh : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/tran.thi.binh ; USER=root ; COMMAND=/bin/ls",
            )
        ),
    ),
    "linux/ssh_accepted_login": Case(
        lambda t0: (
            ssh_accepted(CLIENT, 0, t0=t0)
            + syslog(
                [
                    (
                        2,
                        "sshd[2215]",
                        f"Accepted publickey for deploy from {CLIENT} port 41000 ssh2: ED25519 SHA256:abc",
                    )
                ],
                t0=t0,
            )
        ),
        lambda t0: (
            ssh_failed(CLIENT, [0], t0=t0)
            + syslog([(1, "sshd[2216]", f"Connection closed by {CLIENT} port 41001 [preauth]")], t0=t0)
        ),
    ),
    "linux/ssh_brute_force": Case(
        lambda t0: ssh_failed(ATTACKER, _every(12, 10), t0=t0),
        lambda t0: ssh_failed(ATTACKER, _every(12, 150), t0=t0) + ssh_failed(OTHER, _every(9, 5), t0=t0),
        {"source.ip": ATTACKER},
    ),
    "linux/ssh_success_after_failures": Case(
        lambda t0: ssh_failed(ATTACKER, [0, 20, 40], t0=t0) + ssh_accepted(ATTACKER, 100, t0=t0),
        lambda t0: (
            ssh_accepted(OTHER, 0, t0=t0)
            + ssh_failed(OTHER, [60], t0=t0)
            + ssh_failed(SLOW, [0], t0=t0)
            + ssh_accepted(SLOW, 1500, t0=t0)
            + ssh_failed("192.0.2.60", [0], t0=t0)
            + ssh_accepted("192.0.2.61", 30, t0=t0)
        ),
        {"source.ip": ATTACKER},
    ),
    "linux/sudo_root_shell": Case(
        lambda t0: _sudo(
            t0,
            "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/bin/bash",
            "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/usr/bin/su -",
            "nguyen.van.an : TTY=pts/0 ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/find . -exec /bin/sh ; -quit",
            'nguyen.van.an : TTY=pts/0 ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/python3 -c import pty;pty.spawn("/bin/bash")',
        ),
        lambda t0: _sudo(
            t0,
            "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
            "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=postgres ; COMMAND=/bin/bash",
            "tran.thi.binh : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/tran.thi.binh ; USER=root ; COMMAND=/bin/bash",
            "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/usr/bin/ssh backup01",
        ),
    ),
    "linux/sudo_failures": Case(
        lambda t0: _sudo(
            t0,
            "tran.thi.binh : 3 incorrect password attempts ; TTY=pts/1 ; PWD=/home/tran.thi.binh ; USER=root ; COMMAND=/bin/bash",
            "le.van.cuong : user NOT in sudoers ; TTY=pts/2 ; PWD=/home/le.van.cuong ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
            "pham.thi.dung : command not allowed ; TTY=pts/3 ; PWD=/srv/ho-so ; USER=root ; COMMAND=/usr/bin/rm -rf /srv/ho-so",
        ),
        lambda t0: (
            _sudo(
                t0,
                "nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/usr/bin/systemctl status nginx",
            )
            + syslog([(5, "su[3001]", "FAILED SU (to root) le.van.cuong on pts/2")], t0=t0)
        ),
    ),
    "linux/new_local_user": Case(
        lambda t0: _accounts(
            t0,
            (
                "useradd[7002]",
                "new user: name=backdoor, UID=1005, GID=1005, home=/home/backdoor, shell=/bin/bash, from=/dev/pts/0",
            ),
            (
                "useradd[7003]",
                "new user: name=svc-backup, UID=998, GID=998, home=/var/lib/svc-backup, shell=/usr/sbin/nologin",
            ),
        ),
        lambda t0: _accounts(
            t0,
            ("useradd[7021]", "failed adding user 'nguyen.van.an', data deleted"),
            ("userdel[7022]", "delete user 'le.van.cuong'"),
            ("usermod[7023]", "add 'tran.thi.binh' to group 'users'"),
        ),
    ),
    "linux/user_added_to_admin_group": Case(
        lambda t0: _accounts(
            t0,
            ("usermod[7005]", "add 'backdoor' to group 'sudo'"),
            ("useradd[7004]", "add 'nguyen.van.an' to group 'wheel'"),
            ("gpasswd[7018]", "user pham.thi.dung added by root to group docker"),
        ),
        lambda t0: _accounts(
            t0,
            ("usermod[7006]", "add 'tran.thi.binh' to group 'users'"),
            ("usermod[7007]", "delete 'le.van.cuong' from group 'sudo'"),
            ("gpasswd[7019]", "user pham.thi.dung removed by root from group docker"),
        ),
    ),
    # -- web --------------------------------------------------------------------------------------------------
    "web/web_sql_injection": Case(
        lambda t0: (
            _get(
                [
                    "/tra-cuu-ho-so?ma=1%27%20OR%20%271%27=%271",
                    "/search?q=1+UNION+SELECT+username,password+FROM+users--",
                ]
            )(t0)
            + _get(["/index.php?id=1;WAITFOR%20DELAY%20'0:0:5'--"], fmt="apache")(t0)
        ),
        _get(
            [
                "/tra-cuu?q=select+truong+hoc",
                "/tin-tuc/sleep-and-health",
                "/union/selection",
                "/thu-tuc?linh-vuc=dat-dai",
            ]
        ),
    ),
    "web/web_path_traversal": Case(
        lambda t0: (
            _get(["/static/../../etc/passwd", "/download?file=..%2f..%2f..%2fetc%2fpasswd"])(t0)
            + _get(["/%2e%2e/%2e%2e/windows/win.ini"], fmt="apache")(t0)
        ),
        _get(["/assets/app.min.js", "/van-ban/quyet-dinh-2026.pdf", "/passwd-reset?step=2"]),
    ),
    "web/web_shell_access": Case(
        _get(
            [
                "/uploads/2026/shell.php",
                "/wp-content/uploads/img.php?cmd=whoami",
                "/upload/x.aspx?a=1&cmd=dir",
            ]
        ),
        _get(["/index.php?page=1", "/help/cmd=guide", "/cmd.php.bak", "/search.php?q=cmd%3Dtest"]),
    ),
    "web/web_scanner_user_agent": Case(
        lambda t0: (
            _get(["/"], "sqlmap/1.8.2#stable (https://sqlmap.org)")(t0)
            + _get(["/admin"], "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)", fmt="apache")(t0)
            + _get(
                ["/robots.txt"],
                "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            )(t0)
        ),
        lambda t0: (
            _get(["/"], BROWSER)(t0) + _get(["/"], "Zalo/24.1 Android")(t0) + _get(["/"], "curl/8.5.0")(t0)
        ),
    ),
    # -- network ----------------------------------------------------------------------------------------------
    "network/firewall_deny": Case(
        lambda t0: (
            firewall([(0, ATTACKER, PORTAL, 22)], t0=t0)
            + firewall([(1, ATTACKER, PORTAL, 23)], action="LIMIT BLOCK", t0=t0)
        ),
        lambda t0: (
            firewall([(0, CLIENT, PORTAL, 443)], action="ALLOW", t0=t0)
            + firewall([(1, CLIENT, PORTAL, 123)], action="AUDIT", proto="UDP", t0=t0)
        ),
    ),
    "network/firewall_connection": Case(
        lambda t0: (
            firewall([(0, ATTACKER, PORTAL, 22)], t0=t0)
            + firewall([(1, CLIENT, PORTAL, 53)], action="ALLOW", proto="UDP", t0=t0)
        ),
        lambda t0: ssh_failed(ATTACKER, [0], t0=t0) + flows([(1, ATTACKER, PORTAL, 22)], t0=t0),
    ),
    "network/network_flow": Case(
        lambda t0: (
            flows([(0, CLIENT, "8.8.8.8", 443)], t0=t0)
            + flows([(1, CLIENT, "8.8.8.8", 53)], transport="udp", t0=t0)
        ),
        lambda t0: (
            firewall([(0, ATTACKER, PORTAL, 22)], t0=t0)
            + flows([(1, CLIENT, "8.8.8.8", 0)], transport="icmp", t0=t0)
        ),
    ),
    "network/network_outbound_flow": Case(
        lambda t0: flows([(0, CLIENT, "185.220.101.7", 443)], t0=t0),
        lambda t0: flows([(0, CLIENT, PORTAL, 443)], t0=t0) + flows([(1, ATTACKER, PORTAL, 22)], t0=t0),
    ),
    "network/firewall_deny_burst": Case(
        lambda t0: firewall([(i, ATTACKER, PORTAL, 22) for i in range(35)], t0=t0),
        lambda t0: (
            firewall([(i, ATTACKER, PORTAL, 443) for i in range(35)], action="ALLOW", t0=t0)
            + firewall([(i, OTHER, PORTAL, 22) for i in range(20)], t0=t0)
            + firewall([(i * 10, SLOW, PORTAL, 22) for i in range(35)], t0=t0)
        ),
        {"source.ip": ATTACKER},
    ),
    "network/port_scan": Case(
        lambda t0: (
            firewall([(i, ATTACKER, PORTAL, 1 + i) for i in range(15)], t0=t0)
            + flows([(20 + i, ATTACKER, PORTAL, 1000 + i) for i in range(10)], t0=t0)
        ),
        lambda t0: (
            firewall([(i, ATTACKER, PORTAL, (22, 80, 443)[i % 3]) for i in range(30)], t0=t0)
            + firewall([(i, OTHER, PORTAL, 1 + i) for i in range(19)], t0=t0)
            + firewall([(i * 60, SLOW, PORTAL, 1 + i) for i in range(25)], t0=t0)
        ),
        {"source.ip": ATTACKER},
    ),
    "network/dns_long_label": Case(
        lambda t0: dns(
            [(0, CLIENT, "6a6f686e2e646f65406578616d706c652e636f6d2c70617373776f7264.exfil-tunnel.net")],
            t0=t0,
        ),
        lambda t0: dns(
            [(0, CLIENT, "dichvucong.hochiminhcity.gov.vn"), (1, CLIENT, "a" * 39 + ".example.net")], t0=t0
        ),
    ),
    "network/dns_query": Case(
        lambda t0: dns(
            [(0, CLIENT, "dichvucong.hochiminhcity.gov.vn"), (1, CLIENT, "www.google.com")], t0=t0
        ),
        lambda t0: flows([(0, CLIENT, "10.10.1.53", 53)], transport="udp", t0=t0),
    ),
    "network/dns_many_subdomains": Case(
        lambda t0: dns(
            [(i * 3, CLIENT, f"{i:04x}c0ffee{i * 7919:06x}.exfil-tunnel.net") for i in range(35)], t0=t0
        ),
        lambda t0: (
            dns(
                [
                    (i * 3, CLIENT if i % 2 else "10.10.5.6", f"{i:04x}c0ffee.exfil-tunnel.net")
                    for i in range(35)
                ],
                t0=t0,
            )
            + dns([(i, CLIENT, "cdn.example.net") for i in range(40)], t0=t0)
            + dns([(i, CLIENT, f"www.site{i}.example") for i in range(35)], t0=t0)
        ),
        {"source.ip": CLIENT, "dns.question.registered_domain": "exfil-tunnel.net"},
    ),
    "network/beaconing": Case(
        lambda t0: flows([(i * 100, "10.10.30.5", "185.220.101.7", 443) for i in range(32)], t0=t0),
        lambda t0: (
            flows([(i * 100, "10.10.30.5", f"185.220.101.{i + 1}", 443) for i in range(32)], t0=t0)
            + flows([(i * 100, "10.10.30.6", "185.220.101.7", 443) for i in range(29)], t0=t0)
            + flows([(i * 100, "10.10.30.7", PORTAL, 443) for i in range(32)], t0=t0)
        ),
        {"source.ip": "10.10.30.5", "destination.ip": "185.220.101.7", "destination.port": 443},
    ),
    # -- windows ----------------------------------------------------------------------------------------------
    "windows/powershell_encoded_command": Case(
        lambda t0: windows(
            [
                process_creation(
                    101, PS, f"{PS} -NoP -W Hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA", t=t0
                ),
                process_creation(
                    102,
                    "C:\\Program Files\\PowerShell\\7\\pwsh.exe",
                    "pwsh.exe -NoProfile /enc SQBFAFgA",
                    security=True,
                    t=t0,
                ),
            ]
        ),
        lambda t0: windows(
            [
                process_creation(
                    103, PS, f"{PS} -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1", t=t0
                ),
                process_creation(104, "C:\\Windows\\System32\\cmd.exe", "cmd.exe /c echo -enc test", t=t0),
            ]
        ),
    ),
    "windows/mimikatz_command_line": Case(
        lambda t0: windows(
            [
                process_creation(
                    201,
                    "C:\\Users\\Public\\m.exe",
                    "m.exe privilege::debug sekurlsa::logonpasswords exit",
                    t=t0,
                ),
                process_creation(202, "C:\\Temp\\mimikatz.exe", "mimikatz.exe", security=True, t=t0),
            ]
        ),
        lambda t0: windows(
            [
                process_creation(
                    203,
                    "C:\\Windows\\System32\\notepad.exe",
                    "notepad.exe C:\\docs\\kerberos-notes.txt",
                    t=t0,
                )
            ]
        ),
    ),
    "windows/security_log_cleared": Case(
        lambda t0: windows([log_cleared(301, t=t0)]),
        lambda t0: windows(
            [
                security_event(
                    302, 4624, {"TargetUserName": "admin01", "LogonType": "3", "IpAddress": CLIENT}, t=t0
                ),
                system_event(303, 104, {"Channel": "System"}, t=t0),
            ]
        ),
    ),
    "windows/new_service_installed": Case(
        lambda t0: windows(
            [
                system_event(
                    401,
                    7045,
                    {
                        "ServiceName": "PSEXESVC",
                        "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
                        "ServiceType": "user mode service",
                        "StartType": "demand start",
                        "AccountName": "LocalSystem",
                    },
                    t=t0,
                )
            ]
        ),
        lambda t0: windows(
            [system_event(402, 7036, {"param1": "Windows Update", "param2": "running"}, t=t0)]
        ),
    ),
    "windows/windows_user_created": Case(
        lambda t0: windows([security_event(501, 4720, _account_data("backdoor"), t=t0)]),
        lambda t0: windows(
            [
                security_event(502, 4726, _account_data("old.user"), t=t0),
                security_event(503, 4722, _account_data("x"), t=t0),
            ]
        ),
    ),
    "windows/windows_user_added_to_admins": Case(
        lambda t0: windows([security_event(601, 4732, _group_data("Administrators", "S-1-5-32-544"), t=t0)]),
        lambda t0: windows(
            [
                security_event(602, 4732, _group_data("Remote Desktop Users", "S-1-5-32-555"), t=t0),
                security_event(603, 4728, _group_data("Domain Users", "S-1-5-21-1-2-3-513"), t=t0),
            ]
        ),
    ),
}


def _account_data(name: str) -> dict[str, str]:
    return {
        "TargetUserName": name,
        "TargetDomainName": "SOTAICHINH",
        "TargetSid": "S-1-5-21-308926384-506822093-3341789130-1107",
        "SubjectUserSid": "S-1-5-21-308926384-506822093-3341789130-500",
        "SubjectUserName": "admin01",
        "SubjectDomainName": "SOTAICHINH",
        "SubjectLogonId": "0x3e7",
        "SamAccountName": name,
    }


def _group_data(group: str, sid: str) -> dict[str, str]:
    return {
        "MemberName": "-",
        "MemberSid": "S-1-5-21-3461203602-4096304019-2269080069-1013",
        "TargetUserName": group,
        "TargetDomainName": "Builtin",
        "TargetSid": sid,
        "SubjectUserSid": "S-1-5-21-3461203602-4096304019-2269080069-1000",
        "SubjectUserName": "admin01",
        "SubjectDomainName": "SOTAICHINH",
        "SubjectLogonId": "0x27a10f",
        "PrivilegeList": "-",
    }


# -- the tests ----------------------------------------------------------------------------------------------
def rule_key(path: Path) -> str:
    return path.resolve().relative_to(RULES_DIR).with_suffix("").as_posix()


@pytest.fixture(scope="module")
def city(es: Elasticsearch) -> Iterator[tuple[Any, Any, Any]]:
    """The city's rules loaded and compiled for one scratch store shared by the module."""
    from hcm_soc.cli.rules import compile_rules
    from hcm_soc.detection.loader import load_rules
    from hcm_soc.detection.scratch import ScratchEvents

    load = load_rules([RULES_DIR])
    assert not load.problems, [str(p) for p in load.problems]
    with ScratchEvents(es) as scratch:
        compiled = compile_rules(load.rules, scratch.names)
        assert not compiled.problems, [str(p) for p in compiled.problems]
        yield scratch, load, compiled


def test_every_shipped_rule_has_samples(city: tuple[Any, Any, Any]) -> None:
    _, load, _ = city
    assert sorted(rule_key(r.path) for r in load.rules) == sorted(CASES)


@pytest.mark.parametrize("key", sorted(CASES))
def test_rule_fires_on_positives_only(key: str, city: tuple[Any, Any, Any], es: Elasticsearch) -> None:
    from hcm_soc.detection.correlation import find_correlation_matches
    from hcm_soc.detection.matcher import find_matches

    scratch, load, compiled = city
    rule = next(r for r in load.rules if rule_key(r.path) == key)
    case = CASES[key]
    # each rule's samples live on their own day, so correlations never mix two rules' samples
    t0 = T0 + timedelta(days=sorted(CASES).index(key))
    slug = key.replace("/", "-")
    negatives, neg_window = scratch.load_slice(case.negatives(t0), id_prefix=f"{slug}-neg")
    positives, pos_window = scratch.load_slice(
        case.positives(t0 + timedelta(hours=12)), id_prefix=f"{slug}-pos"
    )
    assert negatives and positives

    if rule.kind == "detection":
        target = compiled.detections[rule.id]
        neg = find_matches(es, target, neg_window, limit=1000)
        pos = find_matches(es, target, pos_window, limit=1000)
        assert neg.examined >= 0
        assert [m.key for m in neg.matches] == [], f"{key} matched negatives:\n{target.lucene}"
        assert sorted(m.key for m in pos.matches) == sorted(e.id for e in positives), target.lucene
        return

    corr = compiled.correlations[rule.id]
    neg = find_correlation_matches(es, corr, neg_window, limit=100)
    assert [dict(m.group) for m in neg.matches] == [], f"{key} fired on negatives: {corr.describe()}"
    pos = find_correlation_matches(es, corr, pos_window, limit=100)
    groups = [dict(m.group) for m in pos.matches]
    assert case.group is not None
    assert any(all(g.get(k) == v for k, v in case.group.items()) for g in groups), (groups, corr.describe())
    assert all(e.id.startswith(f"{slug}-") for m in pos.matches for e in m.events)
