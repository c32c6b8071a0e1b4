"""The per-field checks of inventory records: what is accepted, and the messages for what is not."""

from __future__ import annotations

import pytest

from hcm_soc.inventory.model import (
    check_address,
    check_email,
    check_hostname,
    check_id,
    check_phone,
    check_url,
    parse_network,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.10.1.20", "10.10.1.20/32"),
        ("10.10.0.0/16", "10.10.0.0/16"),
        (" 192.0.2.0/24 ", "192.0.2.0/24"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:db8:40::/48", "2001:db8:40::/48"),
    ],
)
def test_addresses_and_ranges(text: str, expected: str) -> None:
    assert str(parse_network(text)) == expected


@pytest.mark.parametrize("text", ["10.0.0.300", "10.0.0.0/33", "web01", "", "10.0.0.1-10.0.0.9"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="expected an IP address or CIDR range"):
        check_address(text)


def test_host_bits_set_names_the_range() -> None:
    with pytest.raises(ValueError, match=r"host bits set; the range is 10\.20\.0\.0/16"):
        check_address("10.20.0.5/16")


@pytest.mark.parametrize(
    "name",
    ["web01", "web01.sotttt.hcm.example.vn", "WEB01.Example.VN.", "*.dichvucong.hcm.example.vn", "a_b"],
)
def test_hostnames(name: str) -> None:
    assert check_hostname(name) == name.strip()


@pytest.mark.parametrize("name", ["-web", "web..vn", "*.vn", "web 01", "a.*.vn", "http://x.vn", ""])
def test_bad_hostnames(name: str) -> None:
    with pytest.raises(ValueError, match="expected a host name"):
        check_hostname(name)


def test_ip_as_hostname_points_to_addresses() -> None:
    with pytest.raises(ValueError, match="list it under addresses"):
        check_hostname("10.10.1.20")


@pytest.mark.parametrize(
    "url", ["https://dichvucong.hcm.example.vn/", "http://10.10.2.10:8080/dvc/", "https://[2001:db8::1]/x"]
)
def test_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    ["ftp://x.vn/", "dichvucong.hcm.example.vn", "https:///path", "http://x.vn:99999/", "http://a b.vn/"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="expected an http:// or https:// URL"):
        check_url(url)


def test_email_phone_and_id() -> None:
    assert check_email("quantri@sotttt.example.vn") == "quantri@sotttt.example.vn"
    for bad in ("quantri.sotttt.example.vn", "a@b", "a b@c.vn", "a@b@c.vn"):
        with pytest.raises(ValueError, match="expected an e-mail address"):
            check_email(bad)
    assert check_phone("+84 28 0000 0101") == "+84 28 0000 0101"
    with pytest.raises(ValueError, match="expected a phone number"):
        check_phone("call me")
    assert check_id("cong-dich-vu-cong") == "cong-dich-vu-cong"
    for bad in ("Cong", "-x", "a b", "x" * 64):
        with pytest.raises(ValueError, match="expected an id"):
            check_id(bad)
