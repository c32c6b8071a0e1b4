"""Parse-only rate of each text parser, lines per second on one core.

    .venv/bin/python bench/parse_rate.py [--lines 200000] [--json]

Each parser runs over N realistic city log lines of its format (cycled from a
small set) through the same call the ingest pipeline makes; the envelope
(event.original, dataset, tags) is included in a second column, since every
stored event pays for it. Prints the machine first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, datetime

from hcm_soc.parsers.base import ParseContext, ParseError, SourceInfo, finish
from hcm_soc.parsers.registry import get_parser
from machine import machine_line

SAMPLES: dict[str, list[str]] = {
    "syslog": [
        "<38>Nov 25 10:15:01 sotttt-web01 sshd[2211]: Failed password for invalid user oracle from 203.0.113.45 port 52144 ssh2",
        "<86>Nov 25 10:15:03 sotttt-web01 sshd[2212]: Accepted publickey for nguyen.van.an from 10.10.1.32 port 41582 ssh2: ED25519 SHA256:abc",
        "<85>Nov 25 10:16:00 sotttt-web01 sudo: nguyen.van.an : TTY=pts/0 ; PWD=/home/nguyen.van.an ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
        "<4>Nov 25 10:16:05 hcm-gw01 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:08:00 SRC=185.220.101.7 DST=10.10.20.11 LEN=60 TOS=0x00 PREC=0x00 TTL=51 ID=54321 DF PROTO=TCP SPT=51514 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
        '<165>1 2026-11-25T10:16:07.123+07:00 dvc-app01 dvc-api 4321 AUDIT [origin ip="10.10.30.5"][meta sequenceId="77"] \ufeffNgười dùng tran.thi.binh đã nộp hồ sơ HS2026-0001',
    ],
    "nginx": [
        '113.161.45.12 - - [25/Nov/2026:10:15:01 +0700] "GET /thu-tuc-hanh-chinh?linh-vuc=dat-dai HTTP/1.1" 200 5123 "https://dichvucong.hochiminhcity.gov.vn/" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0"',
        '198.51.100.23 - - [25/Nov/2026:10:15:02 +0700] "GET /tra-cuu-ho-so?ma=1%27%20OR%20%271%27=%271 HTTP/1.1" 403 162 "-" "sqlmap/1.8.2#stable (https://sqlmap.org)"',
        '2402:800:6314::1 - nguyen.van.an [25/Nov/2026:10:15:03 +0700] "POST /dang-nhap HTTP/2.0" 302 0 "-" "Zalo/24.1 Android"',
    ],
    "apache": [
        '10.10.40.7 - - [25/Nov/2026:10:15:01 +0700] "GET /cong-bao/2026/11 HTTP/1.1" 200 10234 "-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0"',
        '45.155.205.33 - - [25/Nov/2026:10:15:02 +0700] "GET /../../../../etc/passwd HTTP/1.1" 400 226 "-" "Nikto/2.5.0"',
    ],
    "jsonl": [
        '{"ts": "2026-11-25T03:15:01Z", "client_ip": "113.161.45.12", "user": "tran.thi.binh", "action": "nop-ho-so", "result": "success", "msg": "Nộp hồ sơ HS2026-0001"}',
        '{"ts": "2026-11-25T03:15:02Z", "client_ip": "198.51.100.23", "user": "admin", "action": "dang-nhap", "result": "failure", "msg": "Sai mật khẩu"}',
    ],
    "raw": ["any line at all, stored as message"],
}

OPTIONS: dict[str, dict[str, object]] = {
    "jsonl": {
        "field_map": {
            "ts": "@timestamp",
            "client_ip": "source.ip",
            "user": "user.name",
            "action": "event.action",
            "result": "event.outcome",
            "msg": "message",
        }
    }
}


def measure(fmt: str, n: int) -> dict[str, object]:
    spec = get_parser(fmt)
    lines = SAMPLES[fmt]
    work = [lines[i % len(lines)] for i in range(n)]
    ctx = ParseContext(dataset=spec.default_dataset, received=datetime.now(UTC), options=OPTIONS.get(fmt, {}))
    source = SourceInfo(
        name="bench", dataset=spec.default_dataset, module=spec.module, labels={"sector": "x"}
    )
    failures = 0
    t0 = time.perf_counter()
    for line in work:
        try:
            spec.parse(line, ctx)
        except ParseError:
            failures += 1
    parse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for line in work:
        with contextlib.suppress(ParseError):
            finish(spec.parse(line, ctx), line, source, ctx.received)
    full_s = time.perf_counter() - t0
    return {
        "format": fmt,
        "lines": n,
        "parse_lines_per_s": round(n / parse_s),
        "with_envelope_lines_per_s": round(n / full_s),
        "parse_failures": failures,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine_line()}", file=sys.stderr)
    results = []
    for fmt in SAMPLES:
        try:
            results.append(measure(fmt, args.lines))
        except ImportError as e:
            print(f"{fmt}: parser not available ({e})", file=sys.stderr)
    if args.json:
        print(json.dumps({"machine": machine_line(), "results": results}, indent=2))
        return
    print(f"{'format':8} {'parse lines/s':>14} {'+envelope lines/s':>18} {'failures':>9}")
    for r in results:
        print(
            f"{r['format']:8} {r['parse_lines_per_s']:>14,} {r['with_envelope_lines_per_s']:>18,} {r['parse_failures']:>9}"
        )


if __name__ == "__main__":
    main()
