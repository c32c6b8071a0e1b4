"""The TCP/TLS syslog framing decoder: RFC 6587 octet counting and newline framing, split reads,
oversized and broken frames, and random input (no network: the decoder only sees bytes)."""

from __future__ import annotations

import random

import pytest

from hcm_soc.collectors.syslog import format_peer, parse_listen
from hcm_soc.collectors.syslog_framing import Frame, FrameDecoder

MSG1 = b"<34>1 2026-11-25T08:00:00+07:00 web-01 sshd 4711 - - Failed password for root from 10.0.0.5"
MSG2 = b"<38>Nov 25 08:00:01 web-01 sshd[4712]: Accepted publickey for deploy from 10.0.0.6 port 50022 ssh2"
VIET = "<14>Nov 25 08:00:02 dvc-01 app: Người dùng nguyễn văn an đăng nhập thất bại".encode()


def octet(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def decode(chunks: list[bytes], framing: str = "auto", limit: int = 1024) -> tuple[list[Frame], int]:
    d = FrameDecoder(framing, limit)  # type: ignore[arg-type]
    out: list[Frame] = []
    for c in chunks:
        out += d.feed(c)
    out += d.finish()
    return out, d.framing_errors


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def texts(frames: list[Frame]) -> list[bytes]:
    return [f for f, _ in frames]


def test_newline_lf_crlf_and_nul_terminators() -> None:
    frames, errors = decode([MSG1 + b"\n" + MSG2 + b"\r\n" + VIET + b"\0" + b"last without terminator"])
    assert texts(frames) == [MSG1, MSG2, VIET, b"last without terminator"]
    assert all(not truncated for _, truncated in frames)
    assert errors == 0


def test_empty_lines_are_skipped() -> None:
    frames, _ = decode([b"\n\r\n\0" + MSG1 + b"\n\n\n"])
    assert texts(frames) == [MSG1]


def test_octet_counting_including_a_length_split_across_reads() -> None:
    stream = octet(MSG1) + octet(VIET) + octet(MSG2)
    whole, _ = decode([stream])
    assert texts(whole) == [MSG1, VIET, MSG2]
    # the cut falls inside the length digits, after the space, and inside the message
    for cut in (1, 2, 3, 5, len(octet(MSG1)) + 1, len(octet(MSG1)) + 3):
        split, errors = decode([stream[:cut], stream[cut:]])
        assert texts(split) == [MSG1, VIET, MSG2], cut
        assert errors == 0


def test_octet_frame_may_hold_newlines() -> None:
    multi = b"<11>Nov 25 08:00:03 app-01 java: Exception\n\tat vn.hcm.App.main(App.java:12)"
    frames, _ = decode(bytewise(octet(multi) + octet(MSG1)))
    assert texts(frames) == [multi, MSG1]


def test_mixed_framing_on_one_connection() -> None:
    stream = (
        octet(MSG1) + MSG2 + b"\n" + octet(VIET) + b"\n" + b"2026-11-25 plain line starting with digits\n"
    )
    frames, errors = decode([stream])
    assert texts(frames) == [MSG1, MSG2, VIET, b"2026-11-25 plain line starting with digits"]
    assert errors == 0


def test_partial_frames_wait_for_the_rest() -> None:
    d = FrameDecoder("auto", 1024)
    assert d.feed(b"12") == []  # a length or a line starting with digits: the next byte tells
    assert d.feed(b"") == []
    assert d.feed(b" <13>x\n") == []  # a 12-byte frame, 6 bytes so far; the LF is part of it
    assert d.feed(b"\nabcdef") == [(b"<13>x\n\nabcde", False)]
    assert d.feed(b"\n") == [(b"f", False)]
    d2 = FrameDecoder("auto", 1024)
    assert d2.feed(octet(MSG1)[:-1]) == []
    assert d2.feed(octet(MSG1)[-1:] + MSG2[:10]) == [(MSG1, False)]
    assert d2.feed(MSG2[10:]) == []
    assert d2.feed(b"\n") == [(MSG2, False)]


def test_newline_mode_never_reads_lengths() -> None:
    frames, _ = decode([b"5 hello world\n"], framing="newline")
    assert texts(frames) == [b"5 hello world"]
    frames, _ = decode([b"5 hello world\n"], framing="auto")
    assert texts(frames) == [b"hello", b" world"]  # a 5-byte frame, then a line


def test_bad_length_prefix_in_octet_mode_counts_an_error_and_resynchronises() -> None:
    stream = b"abc not a frame\n" + octet(MSG1) + b"12x bad digits\n" + octet(MSG2)
    for chunks in ([stream], bytewise(stream)):
        frames, errors = decode(chunks, framing="octet")
        # nothing is lost: the bad lines are kept as messages, the next frames are read correctly
        assert texts(frames) == [b"abc not a frame", MSG1, b"12x bad digits", MSG2]
        assert errors == 2


def test_too_many_length_digits_is_not_a_length() -> None:
    frames, errors = decode([b"12345678901 x\n" + octet(MSG1)], framing="octet")
    assert texts(frames) == [b"12345678901 x", MSG1]
    assert errors == 1


def test_octet_frame_cut_short_by_the_end_of_the_stream() -> None:
    frames, errors = decode([octet(MSG1) + octet(MSG2)[:40]])
    assert frames[0] == (MSG1, False)
    assert frames[1] == (octet(MSG2)[3:40], True)
    assert errors == 1


def test_oversized_newline_message_is_truncated_and_the_next_one_kept() -> None:
    big = b"<13>" + b"A" * 5000
    for chunks in ([big + b"\n" + MSG1 + b"\n"], [big[:700], big[700:3000], big[3000:] + b"\n", MSG1, b"\n"]):
        frames, _ = decode(chunks, limit=1024)
        assert frames == [(big[:1024], True), (MSG1, False)]


def test_oversized_octet_frame_is_truncated_and_its_rest_skipped() -> None:
    big = b"<13>" + b"B" * 5000 + b"\nC" * 10  # newlines inside an octet frame are not terminators
    stream = octet(big) + octet(MSG2)
    for chunks in ([stream], [stream[:100], stream[100:2000], stream[2000:]], bytewise(stream)):
        frames, errors = decode(chunks, limit=1024)
        assert frames == [(big[:1024], True), (MSG2, False)]
        assert errors == 0


def test_truncation_never_splits_a_utf8_character() -> None:
    text = ("Đăng nhập thất bại " * 200).encode()
    for limit in range(256, 270):
        frames, _ = decode([text + b"\n"], limit=limit)
        (body, truncated), *_ = frames
        assert truncated and len(body) <= limit and len(body) >= limit - 3
        body.decode("utf-8")  # raises if a character was split
        assert text.startswith(body)


def test_line_of_exactly_the_limit_is_not_truncated_even_with_crlf() -> None:
    line = b"x" * 300
    for chunks in ([line + b"\r\n"], [line, b"\r", b"\n"], bytewise(line + b"\r\n")):
        assert decode(chunks, limit=300)[0] == [(line, False)]
    assert decode([line + b"y\n"], limit=300)[0] == [(line, True)]


@pytest.mark.parametrize("kinds", [("octet", "lf", "crlf", "nul"), ("lf", "crlf")])
@pytest.mark.parametrize("seed", range(20))
def test_random_messages_in_random_framing_and_random_reads_round_trip(
    seed: int, kinds: tuple[str, ...]
) -> None:
    """Lines only (the decoder's bulk path) and mixed framing (its per-message path)."""
    rng = random.Random(seed)
    messages = []
    stream = b""
    for _ in range(rng.randrange(1, 60)):
        body = bytes(rng.choice(b"<>:[] abcxyz0123456789\t\xc3\xa1") for _ in range(rng.randrange(1, 200)))
        body = body.lstrip(b"0123456789")  # a message that starts with digits could read as a length
        if not body.strip():
            continue
        kind = rng.choice(kinds)
        if kind == "octet":
            stream += octet(body)
        else:
            body = body.rstrip(b"\r")
            stream += body + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\0"}[kind]
        messages.append(body)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 30))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    frames, errors = decode(chunks, limit=4096)
    assert texts(frames) == messages
    assert errors == 0


def random_stream(rng: random.Random) -> bytes:
    """Garbage built from pieces that reach every branch: long runs without terminators, length
    prefixes that lie, terminators, raw bytes."""
    pieces = []
    for _ in range(rng.randrange(0, 25)):
        kind = rng.randrange(5)
        if kind == 0:
            pieces.append(b"%d " % rng.choice([rng.randrange(1, 50), rng.randrange(1, 3000), 10**9 - 1]))
        elif kind == 1:
            pieces.append(bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randrange(0, 1500))))
        elif kind == 2:
            pieces.append(rng.choice([b"\n", b"\r\n", b"\0", b"\r", b" ", b"0"]))
        else:
            pieces.append(rng.randbytes(rng.randrange(0, 400)))
    return b"".join(pieces)


@pytest.mark.parametrize("framing", ["auto", "newline", "octet"])
def test_random_bytes_never_break_the_decoder_and_reads_do_not_matter(framing: str) -> None:
    rng = random.Random(framing)
    truncated = 0
    for _ in range(300):
        data = random_stream(rng)
        limit = rng.choice([256, 300, 1000])
        whole, whole_errors = decode([data], framing, limit)
        cuts = sorted(rng.sample(range(1, len(data)), min(max(len(data) - 1, 0), 40))) if data else []
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        split, split_errors = decode(chunks, framing, limit)
        assert split == whole
        assert split_errors == whole_errors
        assert all(0 < len(body) <= limit for body, _ in whole)
        truncated += sum(t for _, t in whole)
        # every byte that came out was in the input, in order
        pos = 0
        for body, _ in whole:
            found = data.find(body, pos)
            assert found >= 0
            pos = found + len(body)
    assert truncated > 10  # the oversized paths were exercised too


def test_listen_and_peer_formats() -> None:
    assert parse_listen("0.0.0.0:5514") == ("0.0.0.0", 5514)
    assert parse_listen("[::1]:6514") == ("::1", 6514)
    assert format_peer(("10.1.2.3", 514)) == "10.1.2.3:514"
    assert format_peer(("::1", 514, 0, 0)) == "[::1]:514"
    assert format_peer(("::ffff:10.1.2.3", 514, 0, 0)) == "10.1.2.3:514"
