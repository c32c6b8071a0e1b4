"""The loaded inventory and its lookups: which asset an IP address, host name or URL belongs to.

The playbook runner asks for every alert, so the indexes are built once: IP ranges as
{prefix length: {network address as int: assets}} per IP version, probed from the longest
prefix down (at most 33 or 129 dict probes, usually a handful); host names in dicts (exact,
wildcard suffix, short name); URLs per host with their path prefixes, longest first.

Ranking, best first: a URL whose path prefix matches (0, the longest prefix first), an exact
host name, a URL host or a single address (1), a wildcard or short-name host match (2), an
address inside a range (3, the more specific range first). One value resolves to the assets of
its best rank only: the most specific entry wins (10.10.5.10 listed by the domain controller is
not also "the workstation LAN 10.10.5.0/24").
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from hcm_soc.inventory.model import (
    Asset,
    AssetMatch,
    Contact,
    Department,
    MatchKind,
    normalize_hostname,
    parse_network,
)

Rank = tuple[int, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class _Hit:
    rank: Rank
    asset: int  # index into Inventory.assets
    kind: MatchKind


class Inventory:
    """The city's systems and the departments that own them, indexed for lookups."""

    def __init__(self, assets: Sequence[Asset], departments: dict[str, Department], source: str) -> None:
        self.assets: list[Asset] = list(assets)
        self.departments: dict[str, Department] = dict(departments)
        self.source = source
        self._by_id = {a.id: a for a in self.assets}
        # version -> prefix length -> network address (int) -> asset indexes
        self._nets: dict[int, dict[int, dict[int, list[int]]]] = {4: {}, 6: {}}
        self._prefixes: dict[int, list[int]] = {4: [], 6: []}  # longest first
        self._exact: dict[str, list[int]] = defaultdict(list)
        self._wild: dict[str, list[int]] = defaultdict(list)  # "dichvucong.hcm.example.vn" for *.…
        self._short: dict[str, list[int]] = defaultdict(list)  # first label of every listed name
        self._urls: dict[str, list[tuple[str, int]]] = defaultdict(list)  # host -> (path prefix, asset)
        for n, asset in enumerate(self.assets):
            if asset.department not in self.departments:
                raise ValueError(f"asset {asset.id!r} names unknown department {asset.department!r}")
            self._index(n, asset)
        for v in (4, 6):
            self._prefixes[v] = sorted(self._nets[v], reverse=True)
        for entries in self._urls.values():
            entries.sort(key=lambda e: -len(e[0]))

    @classmethod
    def empty(cls, source: str = "") -> Inventory:
        """No assets: what the runner uses when no inventory file is configured."""
        return cls([], {}, source)

    def __len__(self) -> int:
        return len(self.assets)

    def get(self, asset_id: str) -> Asset | None:
        return self._by_id.get(asset_id)

    def _index(self, n: int, asset: Asset) -> None:
        for text in asset.addresses:
            net = parse_network(text)
            by_len = self._nets[net.version].setdefault(net.prefixlen, {})
            by_len.setdefault(int(net.network_address), []).append(n)
        for text in asset.hostnames:
            name = normalize_hostname(text)
            if name.startswith("*."):
                self._wild[name[2:]].append(n)
            else:
                self._exact[name].append(n)
                self._short[name.split(".", 1)[0]].append(n)
        for text in asset.urls:
            parts = urlsplit(text)
            host = normalize_hostname(parts.hostname or "")
            self._urls[host].append((parts.path.rstrip("/"), n))

    # -- lookups --------------------------------------------------------------------------------------
    def lookup(self, value: str) -> list[AssetMatch]:
        """The assets `value` (an IP address, host name or URL) belongs to, best match first."""
        return self._matches(self._hits(value), value)

    def match_entities(
        self, *, ips: Iterable[str] = (), hostnames: Iterable[str] = (), urls: Iterable[str] = ()
    ) -> list[AssetMatch]:
        """Every asset any of the values belongs to, once each, best match first (ties keep the
        order urls, hostnames, ips and the order given)."""
        best: dict[int, tuple[Rank, int, _Hit, str]] = {}
        order = 0
        for kind, values in (("url", urls), ("hostname", hostnames), ("ip", ips)):
            for value in values:
                if not value:
                    continue
                for hit in self._hits(str(value), kind=kind):  # type: ignore[arg-type]
                    order += 1
                    seen = best.get(hit.asset)
                    if seen is None or hit.rank < seen[0]:
                        best[hit.asset] = (hit.rank, order, hit, str(value))
        ranked = sorted(best.values(), key=lambda b: (b[0], b[1]))
        return [self._match(hit, value) for _, _, hit, value in ranked]

    def owner_contacts(self, asset: Asset, roles: Iterable[str] = ("owner",)) -> list[Contact]:
        """The contacts of the asset's department with one of `roles`, in file order."""
        wanted = set(roles)
        dep = self.departments.get(asset.department)
        return [c for c in dep.contacts if c.role in wanted] if dep else []

    # -- internals ------------------------------------------------------------------------------------
    def _match(self, hit: _Hit, value: str) -> AssetMatch:
        asset = self.assets[hit.asset]
        return AssetMatch(asset, self.departments[asset.department], hit.kind, value)

    def _matches(self, hits: list[_Hit], value: str) -> list[AssetMatch]:
        seen: set[int] = set()
        out: list[AssetMatch] = []
        for hit in sorted(hits, key=lambda h: h.rank):
            if hit.asset not in seen:
                seen.add(hit.asset)
                out.append(self._match(hit, value))
        return out

    def _hits(self, value: str, kind: Literal["url", "hostname", "ip"] | None = None) -> list[_Hit]:
        """The hits of the best rank only (the most specific entry wins)."""
        hits = self._all_hits(value, kind)
        if not hits:
            return hits
        top = min(h.rank for h in hits)
        return [h for h in hits if h.rank == top]

    def _all_hits(self, value: str, kind: Literal["url", "hostname", "ip"] | None) -> list[_Hit]:
        text = value.strip()
        if not text or not self.assets:
            return []
        if kind == "url" or "://" in text:
            return self._url_hits(text)
        ip = _as_ip(text)
        if ip is not None:
            return self._ip_hits(ip)
        if kind is None and "/" in text:  # "host/path" typed without a scheme
            return self._url_hits("http://" + text)
        host = text
        if host.count(":") == 1:  # host:port
            host = host.split(":", 1)[0]
            ip = _as_ip(host)
            if ip is not None:
                return self._ip_hits(ip)
        return self._host_hits(host)

    def _ip_hits(self, ip: IPAddress) -> list[_Hit]:
        hits: list[_Hit] = []
        as_int = int(ip)
        width = ip.max_prefixlen
        full = (1 << width) - 1
        nets = self._nets[ip.version]
        for plen in self._prefixes[ip.version]:
            mask = full ^ ((1 << (width - plen)) - 1)
            for n in nets[plen].get(as_int & mask, ()):
                rank = (1, 0) if plen == width else (3, width - plen)
                hits.append(_Hit(rank, n, "ip"))
        return hits

    def _host_hits(self, value: str, *, short: bool = True) -> list[_Hit]:
        name = normalize_hostname(value)
        if not name:
            return []
        hits = [_Hit((1, 0), n, "hostname") for n in self._exact.get(name, ())]
        labels = name.split(".")
        # wildcards: the longest listed suffix first
        for i in range(1, len(labels)):
            for n in self._wild.get(".".join(labels[i:]), ()):
                hits.append(_Hit((2, i), n, "hostname"))
        if not short:
            return hits
        if len(labels) == 1:
            # a short name given: the listed FQDN it starts, when only one asset has such a name
            owners = set(self._short.get(name, ()))
            if len(owners) == 1:
                hits.append(_Hit((2, 0), owners.pop(), "hostname"))
        else:
            # an FQDN given: a short name the inventory lists, when only one asset has it
            owners = set(self._exact.get(labels[0], ()))
            if len(owners) == 1:
                hits.append(_Hit((2, 0), owners.pop(), "hostname"))
        return hits

    def _url_hits(self, value: str) -> list[_Hit]:
        try:
            parts = urlsplit(value if "://" in value else "http://" + value)
            host = parts.hostname or ""
        except ValueError:
            return []
        hits: list[_Hit] = []
        path = parts.path or "/"
        name = normalize_hostname(host)
        for prefix, n in self._urls.get(name, ()):
            if not prefix:
                hits.append(_Hit((1, 0), n, "url"))
            elif path == prefix or path.startswith(prefix + "/"):
                hits.append(_Hit((0, -len(prefix)), n, "url"))
        ip = _as_ip(host)
        # a URL's host is a DNS name someone chose: no short-name guessing
        # (http://sotttt-web01.other.example/ is not sotttt-web01)
        host_hits = self._ip_hits(ip) if ip is not None else self._host_hits(host, short=False)
        hits.extend(_Hit(h.rank, h.asset, "url") for h in host_hits)
        return hits


def _as_ip(text: str) -> IPAddress | None:
    """`text` as an IP address (IPv6 in brackets, an IPv4-mapped IPv6 as IPv4, a zone id
    dropped), or None."""
    t = text.strip()
    if t.startswith("[") and "]" in t:
        t = t[1 : t.index("]")]
    t = t.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(t)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
