"""HTTP/1.x request/response pairing over TCP payloads."""

from __future__ import annotations

from typing import Any

from scapy.layers.http import HTTP, HTTPRequest, HTTPResponse

from hcm_soc.collectors.network.http import HttpTracker

KEY = ("10.1.1.5", 51000, "203.113.1.10", 80)


def _tracker() -> tuple[HttpTracker, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    return HttpTracker(events.append), events


def test_get_request_and_response_split_across_segments() -> None:
    tracker, events = _tracker()
    req = bytes(
        HTTP()
        / HTTPRequest(
            Method=b"GET",
            Path=b"/tin-tuc/bai-viet?id=42&lang=vi",
            Host=b"hochiminhcity.gov.vn:8080",
            User_Agent=b"Mozilla/5.0 (X11; Linux x86_64)",
            Referer=b"https://google.com/",
        )
    )
    body = "Xin chào thành phố".encode()
    resp = bytes(
        HTTP()
        / HTTPResponse(Status_Code=b"200", Reason_Phrase=b"OK", Content_Type=b"text/html; charset=utf-8",
                       Content_Length=str(len(body)).encode())
        / body
    )  # fmt: skip
    tracker.add_segment(10.0, KEY, True, req[:7])
    tracker.add_segment(10.0, KEY, True, req[7:])
    tracker.add_segment(10.1, KEY, False, resp[:20])
    assert events == []
    tracker.add_segment(10.1, KEY, False, resp[20:-3])
    assert events == []  # body not complete yet
    tracker.add_segment(10.2, KEY, False, resp[-3:])
    assert len(events) == 1
    ev = events[0]
    assert ev["event"]["dataset"] == "network.http"
    assert ev["network"]["protocol"] == "http"
    assert ev["source"] == {"ip": "10.1.1.5", "port": 51000}
    assert ev["destination"] == {"ip": "203.113.1.10", "port": 80}
    assert ev["http"]["request"]["method"] == "GET"
    assert ev["http"]["request"]["referrer"] == "https://google.com/"
    assert ev["http"]["request"]["body"]["bytes"] == 0
    assert ev["http"]["response"] == {
        "status_code": 200,
        "mime_type": "text/html",
        "body": {"bytes": len(body)},
    }
    assert ev["http"]["version"] == "1.1"
    assert ev["url"] == {
        "original": "/tin-tuc/bai-viet?id=42&lang=vi",
        "path": "/tin-tuc/bai-viet",
        "query": "id=42&lang=vi",
        "domain": "hochiminhcity.gov.vn",
    }
    assert ev["user_agent"]["original"] == "Mozilla/5.0 (X11; Linux x86_64)"
    assert ev["@timestamp"] == "1970-01-01T00:00:10Z"


def test_pipelined_post_and_chunked_response() -> None:
    tracker, events = _tracker()
    form = b"user=admin&pass=secret"
    post = bytes(
        HTTP()
        / HTTPRequest(Method=b"POST", Path=b"/login", Host=b"portal.local",
                      Content_Type=b"application/x-www-form-urlencoded", Content_Length=str(len(form)).encode())
        / form
    )  # fmt: skip
    get = bytes(HTTP() / HTTPRequest(Method=b"GET", Path=b"/favicon.ico", Host=b"portal.local"))
    tracker.add_segment(1.0, KEY, True, post + get)
    chunked = (
        b"HTTP/1.1 302 Found\r\nLocation: /home\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    not_found = bytes(
        HTTP() / HTTPResponse(Status_Code=b"404", Reason_Phrase=b"Not Found", Content_Length=b"0")
    )
    stream = chunked + not_found
    for i in range(0, len(stream), 9):  # worst-case segmentation
        tracker.add_segment(1.1, KEY, False, stream[i : i + 9])
    assert [e["http"]["request"]["method"] for e in events] == ["POST", "GET"]
    assert events[0]["http"]["request"]["body"]["bytes"] == len(form)
    assert events[0]["http"]["request"]["mime_type"] == "application/x-www-form-urlencoded"
    assert events[0]["http"]["response"]["status_code"] == 302
    assert events[0]["http"]["response"]["body"]["bytes"] == 12
    assert events[1]["http"]["response"]["status_code"] == 404
    assert events[1]["url"]["path"] == "/favicon.ico"


def test_unanswered_request_emitted_on_close_and_flush() -> None:
    tracker, events = _tracker()
    tracker.add_segment(1.0, KEY, True, b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n")
    tracker.close(KEY)
    assert len(events) == 1 and "response" not in events[0]["http"]
    assert events[0]["http"]["version"] == "1.0"
    other = ("10.1.1.6", 1, "10.1.1.7", 80)
    tracker.add_segment(2.0, other, True, b"HEAD / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
    tracker.add_segment(2.1, other, False, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    assert events[-1]["url"]["domain"] == "::1"
    assert events[-1]["http"]["response"]["body"]["bytes"] == 0  # HEAD response has no body
    tracker.flush()
    assert len(events) == 2


def test_non_http_bytes_counted_without_event() -> None:
    tracker, events = _tracker()
    tracker.add_segment(1.0, KEY, True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100))
    tracker.add_segment(1.0, KEY, True, b"GET / HTTP/1.1\r\n\r\n")  # connection already judged not HTTP
    other = ("10.1.1.6", 2, "10.1.1.7", 80)
    tracker.add_segment(1.0, other, True, b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    tracker.add_segment(1.0, ("a", 3, "b", 80), False, b"HTTP/1.1 abc\r\n\r\n")
    tracker.add_segment(
        1.0, ("a", 4, "b", 80), False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    tracker.flush()
    # Only the response whose headers parsed before its chunked body turned out broken is reported.
    assert [e["http"]["response"]["status_code"] for e in events] == [200]
    assert all("request" not in e["http"] for e in events)
    assert tracker.non_http == 4


def test_chunked_with_trailers_fed_byte_by_byte() -> None:
    tracker, events = _tracker()
    tracker.add_segment(
        1.0, KEY, True, b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    stream = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    for byte in stream:
        tracker.add_segment(1.1, KEY, False, bytes([byte]))
    assert [(e["url"]["path"], e["http"]["response"]["status_code"]) for e in events] == [
        ("/1", 200),
        ("/2", 204),
    ]
    assert events[0]["http"]["response"]["body"]["bytes"] == 3
    assert tracker.non_http == 0


def test_unanswered_pipeline_is_bounded() -> None:
    tracker, events = _tracker()
    tracker.add_segment(1.0, KEY, True, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n" * 70)
    assert len(events) == 70 - 64
    assert all("response" not in e["http"] for e in events)
