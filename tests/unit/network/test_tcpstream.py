"""TCP reassembly: in-order delivery, retransmissions, overlaps, out-of-order segments, gaps, wrap-around."""

from __future__ import annotations

from hcm_soc.collectors.network.tcpstream import TcpStream

SYN, ACK, RST = 0x02, 0x10, 0x04


def _feed(stream: TcpStream, segments: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for seq, data in segments:
        out += b"".join(stream.segment(seq, ACK, data))
    return out


def test_in_order_after_syn() -> None:
    s = TcpStream()
    assert s.segment(999, SYN, b"") == []
    assert _feed(s, [(1000, b"abc"), (1003, b"def")]) == b"abcdef"
    assert (s.retransmitted, s.out_of_order, s.gaps) == (0, 0, 0)


def test_retransmission_and_partial_overlap() -> None:
    s = TcpStream()
    s.segment(99, SYN, b"")
    got = _feed(s, [(100, b"hello "), (100, b"hello "), (103, b"lo world"), (106, b"wor")])
    assert got == b"hello world"
    assert s.retransmitted == 2  # the exact repeat and the fully covered "wor"


def test_out_of_order_segments_wait_for_the_hole() -> None:
    s = TcpStream()
    s.segment(0, SYN, b"")
    assert s.segment(7, ACK, b"CCC") == []
    assert s.segment(4, ACK, b"BBB") == []
    assert b"".join(s.segment(1, ACK, b"AAA")) == b"AAABBBCCC"
    assert s.out_of_order == 2 and s.gaps == 0


def test_buffer_overflow_skips_the_hole_and_counts_it() -> None:
    s = TcpStream(max_buffer=10)
    s.segment(0, SYN, b"")
    assert s.segment(11, ACK, b"123456") == []  # bytes 1..10 never arrive
    out = s.segment(17, ACK, b"789012")  # 12 bytes held > 10: give up on the hole
    assert b"".join(out) == b"123456789012"
    assert (s.gaps, s.missed_bytes) == (1, 10)
    assert b"".join(s.segment(23, ACK, b"x")) == b"x"


def test_finish_delivers_what_waited_behind_holes() -> None:
    s = TcpStream()
    s.segment(0, SYN, b"")
    _feed(s, [(1, b"a"), (5, b"e"), (9, b"i")])
    assert b"".join(s.finish()) == b"ei"
    assert (s.gaps, s.missed_bytes) == (2, 6)


def test_mid_stream_start_and_sequence_wrap_around() -> None:
    s = TcpStream()
    start = 0xFFFFFFFF - 2  # three bytes before the wrap
    assert _feed(s, [(start, b"xyz"), (0, b"12"), (2, b"34")]) == b"xyz1234"
    assert s.segment(0xFFFFFFFE, ACK, b"yz") == []  # an old retransmission across the wrap
    assert s.retransmitted == 1


def test_data_on_a_reset_is_ignored() -> None:
    s = TcpStream()
    s.segment(0, SYN, b"")
    assert s.segment(1, RST | ACK, b"junk") == []
    assert _feed(s, [(1, b"ok")]) == b"ok"


def test_many_tiny_segments_behind_a_hole_are_bounded() -> None:
    s = TcpStream()
    s.segment(0, SYN, b"")
    first_delivery = None
    out = b""
    for i in range(300):  # one byte each, all after a one-byte hole at sequence 1
        got = b"".join(s.segment(2 + i, ACK, bytes([65 + i % 26])))
        if got and first_delivery is None:
            first_delivery = i
        out += got
    assert first_delivery == 256  # the 257th held segment forced the hole to be skipped
    assert (s.gaps, s.missed_bytes, len(out)) == (1, 1, 300)
    assert s.finish() == []
