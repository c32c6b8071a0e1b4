"""The API's pure helpers (no Elasticsearch needed): the error mapping, If-Match parsing, splitting
an ingest body into events, and the Prometheus text exposition."""

from __future__ import annotations

import pytest

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.incidents.lifecycle import TransitionError
from hcm_soc.models.incident import IncidentConflict, IncidentNotFound
from hcm_soc.web.api.deps import expected_seq_no
from hcm_soc.web.api.ingest import split_events
from hcm_soc.web.api.metrics import Exposition
from hcm_soc.web.auth import AuthError
from hcm_soc.web.errors import ApiError, classify
from hcm_soc.web.headers import security_headers


class RuleNotFound(HcmSocError):
    pass


class UserExists(HcmSocError):
    pass


class WeakPassword(HcmSocError):
    pass


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (AuthError(401, "unauthenticated", "who?"), 401, "unauthenticated"),
        (AuthError(403, "csrf", "token"), 403, "csrf"),
        (AuthError(429, "throttled", "slow down"), 429, "throttled"),
        (IncidentNotFound("x"), 404, "not_found"),
        (IncidentConflict("x"), 409, "conflict"),
        (TransitionError("x"), 409, "transition_not_allowed"),
        (DependencyUnavailable("es"), 503, "unavailable"),
        (ValueError("bad"), 422, "invalid"),
        (RuleNotFound("r"), 404, "not_found"),
        (UserExists("u"), 409, "conflict"),
        (WeakPassword("p"), 422, "invalid"),
        (HcmSocError("other"), 400, "bad_request"),
        (ApiError(413, "too_large", "big"), 413, "too_large"),
        (RuntimeError("bug"), 500, "internal"),
    ],
)
def test_errors_map_to_status_and_stable_code(exc: BaseException, status: int, code: str) -> None:
    got_status, got_code, message, _ = classify(exc)
    assert (got_status, got_code) == (status, code)
    assert message
    if status == 500:
        assert "bug" not in message  # nothing internal leaks


def test_problems_of_an_error_are_listed() -> None:
    err = HcmSocError("rule invalid")
    err.problems = ["line 3: detection: missing"]  # type: ignore[attr-defined]
    assert classify(err)[3] == {"problems": ["line 3: detection: missing"]}


@pytest.mark.parametrize(
    ("body", "header", "expected"),
    [(None, None, None), (3, None, 3), (None, '"7"', 7), (None, "7", 7), (5, '"5"', 5), (None, "*", None)],
)
def test_expected_seq_no(body: int | None, header: str | None, expected: int | None) -> None:
    assert expected_seq_no(body, header) == expected


@pytest.mark.parametrize(("body", "header"), [(None, 'W/"1"'), (None, '"abc"'), (1, '"2"')])
def test_expected_seq_no_refuses_garbage_and_contradictions(body: int | None, header: str) -> None:
    with pytest.raises(ApiError) as e:
        expected_seq_no(body, header)
    assert e.value.status == 422


def test_split_events_reads_ndjson_and_arrays() -> None:
    assert split_events(b'{"a": 1}\r\n\n  \n{"b": 2}\n') == [(1, '{"a": 1}'), (4, '{"b": 2}')]
    assert split_events(b' [{"a": 1}, 2]') == [(1, '{"a":1}'), (2, "2")]
    for bad in (b"[1, 2", b"[}"):
        with pytest.raises(ApiError):
            split_events(bad)


def test_exposition_escapes_labels_and_formats_numbers() -> None:
    out = Exposition()
    out.family("m", "gauge", "Help.", [({"l": 'a"b\\c\nd'}, 2.0), ({}, 0.5)])
    assert out.text() == '# HELP m Help.\n# TYPE m gauge\nm{l="a\\"b\\\\c\\nd"} 2\nm 0.5\n'


def test_static_files_may_be_cached_everything_else_not() -> None:
    assert security_headers("/api/incidents")["cache-control"] == "no-store"
    assert security_headers("/")["cache-control"] == "no-store"
    assert "cache-control" not in security_headers("/static/htmx.min.js")
    assert security_headers("/static/x")["x-frame-options"] == "DENY"
