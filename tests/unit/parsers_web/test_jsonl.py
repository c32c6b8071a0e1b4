"""JSON lines -> ECS through a field map: golden file, options, types, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.parsers.jsonl import parse_jsonl
from hcm_soc.parsers.registry import get_parser
from tests.unit.parsers_web import DATA, check_golden, parse_all, sample_lines

# the field map of collectors/dvc-backend.yml, plus a nested source path
FIELD_MAP = {
    "ts": "@timestamp",
    "client_ip": "source.ip",
    "user": "user.name",
    "action": "event.action",
    "result": "event.outcome",
    "msg": "message",
    "meta.request_id": "http.request.id",
}
SAMPLE = sample_lines(DATA / "dvc_app.jsonl")


def ctx(**options: Any) -> ParseContext:
    return ParseContext(
        dataset="dvc.app",
        timezone=ZoneInfo("Asia/Ho_Chi_Minh"),
        received=datetime(2026, 11, 25, 2, 0, tzinfo=UTC),
        options=options,
    )


CTX = ctx(field_map=FIELD_MAP)


def line(n: int) -> dict[str, Any]:
    return parse_jsonl(SAMPLE[n - 1], CTX)


def test_registry_resolves_jsonl() -> None:
    assert get_parser("jsonl").parse is parse_jsonl


def test_sample_matches_golden() -> None:
    check_golden(parse_all(parse_jsonl, SAMPLE, CTX), DATA / "dvc_app.golden.json")


def test_mapped_fields_move_and_the_rest_stays_under_json() -> None:
    e = line(1)
    assert e["@timestamp"] == "2026-11-25T01:15:02Z"
    assert e["source"] == {"ip": "113.161.72.14"}
    assert e["user"] == {"name": "nguyen.van.an"}
    assert e["event"] == {"action": "nop_ho_so", "outcome": "success"}
    assert e["message"] == "Nộp hồ sơ cấp giấy phép xây dựng thành công"
    assert e["http"] == {"request": {"id": "r-7f3a"}}  # nested source path meta.request_id
    assert e["json"] == {
        "ho_so": {"ma": "000.00.31.H29-261125-0001", "linh_vuc": "Xây dựng", "so_trang": 12, "khan": False},
        "duration_ms": 231.5,
        "meta": {"node": "dvc-app-02"},  # request_id moved out, the sibling stays
    }


def test_json_types_are_preserved() -> None:
    j = line(1)["json"]
    assert type(j["ho_so"]["so_trang"]) is int
    assert j["ho_so"]["khan"] is False
    assert type(j["duration_ms"]) is float
    j = line(4)["json"]
    assert j["rows"] == [1, 2, 3]
    assert j["ratio"] == 0.25
    assert j["big"] == pytest.approx(1.2345678901234568e29)  # beyond 64 bits: kept as a float


def test_literal_dotted_key_is_read_before_nested_keys() -> None:
    e = line(2)
    assert e["http"]["request"]["id"] == "r-7f3b"
    assert "meta.request_id" not in e.get("json", {})


def test_null_values_are_not_mapped() -> None:
    e = parse_jsonl('{"user": null, "msg": "x"}', CTX)
    assert "user" not in e
    assert e["message"] == "x"


def test_unmapped_fields_cannot_collide_with_ecs_objects() -> None:
    e = line(3)
    assert e["json"]["http"] == {"status": 400}
    assert e["json"]["source"] == "cong-dvc"
    assert e["source"] == {"ip": "203.0.113.66"}


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        ('"2026-11-25T08:15:02+07:00"', {}, "2026-11-25T01:15:02Z"),
        ('"2026-11-25T01:21:00.123456Z"', {}, "2026-11-25T01:21:00.123456Z"),
        ('"2026-11-25 08:20:00"', {}, "2026-11-25T01:20:00Z"),  # no zone: the source's zone
        ("1795569302", {}, "2026-11-25T01:15:02Z"),  # epoch seconds
        ("1795569302123", {}, "2026-11-25T01:15:02.123000Z"),  # epoch ms, guessed
        ('"1795569302"', {}, "2026-11-25T01:15:02Z"),  # epoch as text
        ("1795569302123456", {"timestamp_format": "unix_us"}, "2026-11-25T01:15:02.123456Z"),
        ("1795569302", {"timestamp_format": "unix"}, "2026-11-25T01:15:02Z"),
        ('"25/11/2026 08:15:02"', {"timestamp_format": "%d/%m/%Y %H:%M:%S"}, "2026-11-25T01:15:02Z"),
    ],
)
def test_timestamp_formats(value: str, options: dict[str, Any], expected: str) -> None:
    e = parse_jsonl(f'{{"ts": {value}}}', ctx(field_map={"ts": "@timestamp"}, **options))
    assert e["@timestamp"] == expected
    assert "json" not in e


def test_timestamp_field_option_without_a_field_map() -> None:
    e = parse_jsonl(
        '{"time": {"local": "25/11/2026 08:15:02"}, "n": 1}',
        ctx(timestamp_field="time.local", timestamp_format="%d/%m/%Y %H:%M:%S"),
    )
    assert e == {"@timestamp": "2026-11-25T01:15:02Z", "json": {"n": 1}}


def test_a_second_timestamp_is_kept_not_dropped() -> None:
    e = parse_jsonl(
        '{"a": "2026-11-25T01:00:00Z", "b": "2026-11-25T02:00:00Z"}',
        ctx(timestamp_field="a", field_map={"b": "@timestamp"}),
    )
    assert e["@timestamp"] == "2026-11-25T01:00:00Z"
    assert e["json"] == {"b": "2026-11-25T02:00:00Z"}


def test_without_a_field_map_everything_is_under_json() -> None:
    e = parse_jsonl('{"msg": "Xin chào", "n": 1, "ok": true}', ctx())
    assert e == {"json": {"msg": "Xin chào", "n": 1, "ok": True}}


def test_an_already_decoded_mapping_is_accepted() -> None:
    assert parse_jsonl({"msg": "đã giải mã", "x": 1}, CTX) == {"message": "đã giải mã", "json": {"x": 1}}


def test_ip_list_targets_are_checked_item_by_item() -> None:
    c = ctx(field_map={"ips": "related.ip"})
    assert parse_jsonl('{"ips": ["10.0.0.1", "2001:db8::1"]}', c) == {
        "related": {"ip": ["10.0.0.1", "2001:db8::1"]}
    }
    with pytest.raises(ParseError, match=r"field 'ips' \(mapped to related.ip\) is not an IP address: 'x'"):
        parse_jsonl('{"ips": ["10.0.0.1", "x"]}', c)


@pytest.mark.parametrize(
    ("n", "reason"),
    [
        (6, "expected a JSON object, got a JSON array"),
        (7, "not valid JSON at line 1 column 62 (char 61): unexpected end of data"),
        (8, "field 'client_ip' (mapped to source.ip) is not an IP address: 'không rõ'"),
        (9, "timestamp 'hôm qua' does not match format 'auto'"),
        (10, "expected a JSON object, got a JSON string"),
        (11, "empty line"),
    ],
)
def test_bad_lines_raise_with_a_reason(n: int, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        line(n)
    assert str(info.value).startswith(reason)


def test_json_error_names_the_position() -> None:
    with pytest.raises(ParseError, match=r"column 9 \(char 8\)"):
        parse_jsonl('{"a": 1,,}', CTX)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"field_map": ["ts"]}, "option field_map must map source fields to ECS fields"),
        ({"field_map": {"ts": 5}}, "both must be non-empty strings"),
        ({"field_map": {"ts": "a..b"}}, "is not a dotted field path"),
        ({"field_map": {"a": "user", "b": "user.name"}}, "conflicts with another mapped field"),
        ({"timestamp_format": "yesterday"}, "option timestamp_format 'yesterday'"),
    ],
)
def test_bad_options_raise_for_each_record(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_jsonl('{"ts": "2026-11-25T01:00:00Z", "a": "x", "b": "y"}', ctx(**options))
    assert reason in str(info.value)
