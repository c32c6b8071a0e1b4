"""Web server access logs (nginx, Apache) -> ECS, shaped like Filebeat's nginx/apache modules.

One grammar reads both servers' usual formats:

    [vhost:port] addr ident user [time] "request" status bytes ["referrer" "user-agent" ["x-forwarded-for"]] ...

- nginx `combined` (its default `main`), with or without a trailing `"$http_x_forwarded_for"`;
- Apache `common`, `combined`, and `vhost_combined` (the leading `%v:%p`);
- anything after the known fields (`$request_time`, `$host`, …) is ignored; it stays in
  `event.original`.

What is stored, and why:

- `url.original` is the request target exactly as the client sent it: percent-encoding is
  kept byte for byte, because SigmaHQ `webserver` rules list encoded variants (`%2e%2e%2f`,
  `UNION%20SELECT`). Only the log file's own escaping (`\\xHH`, `\\"`, `\\\\`, which nginx
  and Apache write for bytes outside printable ASCII) is undone, so a raw UTF-8 Vietnamese
  path reads as Vietnamese whichever way the server wrote it. When undoing it would give
  invalid UTF-8 or control characters (TLS handshakes sent to a plain HTTP port), the text
  stays as logged.
- `url.path` is everything before the first `?`, `url.query` everything after it (empty
  string for a bare `?`; no fragment splitting, so `#'--` stays in the query an attacker
  sent). Absolute-form targets (`GET http://host/…`, proxy probes) also give `url.scheme`,
  `url.domain`, `url.port`; `CONNECT host:port` gives `url.domain`/`url.port`.
- Percent-decoded forms go to `hcm.url.decoded.{original,path,query}`, only when decoding
  changes something (query: `+` is a space). Rules often list only one variant
  (`union select`), so the project's Sigma pipeline can map `cs-uri-query` to both the raw
  and the decoded field. Bytes that are not UTF-8 after decoding become `\\xHH`.
- `source.address` is the client as logged; `source.ip` when it is an IP, else
  `source.domain` (Apache with HostnameLookups). A trailing X-Forwarded-For list goes to
  `<module>.access.x_forwarded_for` (as logged) and its first valid IP to
  `network.forwarded_ip` (it is client-supplied, so `source.ip` stays the TCP peer).
- A request line that is not `METHOD target [HTTP/x.y]` (TLS bytes, garbage) is NOT a
  parse error: the rest of the line (client, time, status, …) is good evidence of a probe.
  The request text goes to `<module>.access.malformed_request` and no `url.*`/method is
  set. `"-"` or `""` (connection closed before a request) sets nothing.
- A line without the mandatory fields (client, `[time]`, quoted request, status, bytes)
  raises ParseError naming the first missing part; the pipeline stores it as a failure.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, unquote_plus
from zoneinfo import ZoneInfo

from hcm_soc.parsers.base import Event, ParseContext, ParseError

# A double-quoted field as nginx/Apache write it: `"` and `\` inside are backslash-escaped.
# Written as an unrolled loop, which is several times faster than `(?:[^"\\]|\\.)*`.
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'

_LINE = re.compile(
    r"(?:(?P<vhost>\S+:\d+) )?"  # Apache vhost_combined: %v:%p
    r"(?P<addr>\S+) (?P<ident>\S+) (?P<user>\S+) "
    r"\[(?P<time>[^\]]+)\] "
    rf"{_Q} "
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
    rf"(?: {_Q} {_Q}(?: {_Q})?)?"
)
_G_REQUEST, _G_REFERRER, _G_AGENT, _G_XFF = 6, 9, 10, 11

_TIME = re.compile(
    r"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?: ?([+-])(\d{2}):?(\d{2}))?"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
# RFC 9110 token characters: what a method may be made of.
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_EXTENSION = re.compile(r"[0-9A-Za-z_+~-]{1,16}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_nginx(raw: str, ctx: ParseContext) -> Event:
    """One nginx access-log line (combined/common, optional trailing X-Forwarded-For)."""
    return _parse(raw, ctx, "nginx")


def parse_apache(raw: str, ctx: ParseContext) -> Event:
    """One Apache access-log line (common, combined or vhost_combined)."""
    return _parse(raw, ctx, "apache")


def _parse(raw: Any, ctx: ParseContext, module: str) -> Event:
    line = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    line = line.rstrip("\r\n")
    m = _LINE.match(line)
    if m is None:
        raise ParseError(_diagnose(line))
    g = m.group
    status = int(g("status"))
    event: Event = {
        "@timestamp": _timestamp(g("time"), ctx.timezone),
        "event": {
            "category": ["web"],
            "type": ["access", "error"] if status >= 400 else ["access"],
            "outcome": "failure" if status >= 400 else "success",
        },
    }
    http: dict[str, Any] = {"response": {"status_code": status}}
    if g("bytes") != "-":
        http["response"]["body"] = {"bytes": int(g("bytes"))}
    related_ip: list[str] = []

    addr = g("addr")
    source: dict[str, Any] = {"address": addr}
    ip = _ip(addr)
    if ip is not None:
        source["ip"] = ip
        related_ip.append(ip)
    else:
        source["domain"] = addr
    event["source"] = source

    user = g("user")
    if user != "-":
        user = _unescape(user)
        event["user"] = {"name": user}
        event["related"] = {"user": [user]}

    extra: dict[str, Any] = {}
    url: dict[str, Any] = {}
    request = g(_G_REQUEST)
    if request and request != "-":
        request = _unescape(request)
        if not _request(request, http, url):
            extra["malformed_request"] = request

    vhost = g("vhost")
    if vhost:
        host, _, port = vhost.rpartition(":")
        host = host.strip("[]")
        dest: dict[str, Any] = {"port": int(port)}
        host_ip = _ip(host)
        if host_ip is not None:
            dest["ip"] = host_ip
        else:
            dest["domain"] = host
        event["destination"] = dest
        if url and "domain" not in url:
            url["domain"] = host

    referrer = g(_G_REFERRER)
    if referrer and referrer != "-":
        http.setdefault("request", {})["referrer"] = _unescape(referrer)
    agent = g(_G_AGENT)
    if agent and agent != "-":
        event["user_agent"] = {"original": _unescape(agent)}
    xff = g(_G_XFF)
    if xff and xff != "-":
        entries = [e.strip() for e in _unescape(xff).split(",") if e.strip()]
        extra["x_forwarded_for"] = entries
        forwarded = [ip for ip in (_ip(_strip_port(e)) for e in entries) if ip is not None]
        if forwarded:
            event["network"] = {"forwarded_ip": forwarded[0]}
            related_ip.extend(ip for ip in forwarded if ip not in related_ip)

    event["http"] = http
    if url:
        event["url"] = url
        decoded = _decoded(url)
        if decoded:
            event["hcm"] = {"url": {"decoded": decoded}}
    if related_ip:
        event.setdefault("related", {})["ip"] = related_ip
    if extra:
        event[module] = {"access": extra}
    return event


def _request(request: str, http: dict[str, Any], url: dict[str, Any]) -> bool:
    """Fill method/version/url from `METHOD target [HTTP/x.y]`; False when it is not one."""
    method, sep, rest = request.partition(" ")
    if not sep or not rest or _METHOD.fullmatch(method) is None:
        return False
    target = rest
    head, sp, last = rest.rpartition(" ")
    if last.startswith("HTTP/"):
        if not sp or not head:
            return False  # "GET HTTP/1.1": no target
        target = head
        http["version"] = last[5:]
    elif rest.startswith("HTTP/"):
        return False
    http.setdefault("request", {})["method"] = method
    url["original"] = target
    if method.upper() == "CONNECT" and "/" not in target:
        _authority(target, url)
        return True
    path = target
    scheme, sep, after = target.partition("://")
    if (
        sep
        and scheme
        and scheme.isascii()
        and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()
    ):
        # absolute-form: scheme://authority/path?query
        url["scheme"] = scheme.lower()
        cut = len(after)
        for ch in "/?#":
            i = after.find(ch)
            if i != -1:
                cut = min(cut, i)
        _authority(after[:cut], url)
        path = after[cut:]
    path, q, query = path.partition("?")
    if path:
        url["path"] = path
        ext = _extension(path)
        if ext:
            url["extension"] = ext
    if q:
        url["query"] = query
    return True


def _authority(authority: str, url: dict[str, Any]) -> None:
    host = authority.rpartition("@")[2]  # never store userinfo: it may carry a password
    port = ""
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            host, port = host[1:end], host[end + 1 :].lstrip(":")
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    if host:
        url["domain"] = host
    if port.isdigit() and int(port) <= 65535:
        url["port"] = int(port)


def _extension(path: str) -> str | None:
    # from the decoded last segment: "/..%2fetc%2fpasswd" has no extension, "/a%2Ephp" has "php"
    last = path.rpartition("/")[2].partition(";")[0]
    if "%" in last:
        last = unquote(last, errors="replace").rpartition("/")[2]
    stem, dot, ext = last.rpartition(".")
    if not dot or not stem.strip(".") or _EXTENSION.fullmatch(ext) is None:
        return None
    return ext.lower()


def _decoded(url: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    path: str = url.get("path", "")
    query: str | None = url.get("query")
    dpath = unquote(path, errors="backslashreplace") if "%" in path else path
    dquery = query
    if query is not None and ("%" in query or "+" in query):
        dquery = unquote_plus(query, errors="backslashreplace")
    if dpath != path:
        out["path"] = dpath
    if dquery is not None and dquery != query:
        out["query"] = dquery
    if out:
        original: str = url["original"]
        # keep scheme://authority of an absolute-form target; decode only path and query
        rest = len(path) + (len(query) + 1 if query is not None else 0)
        prefix = original[: len(original) - rest] if "scheme" in url else ""
        out["original"] = prefix + dpath + ("?" + dquery if dquery is not None else "")
    return out


def _unescape(text: str) -> str:
    """Undo the log file's escaping (\\xHH, \\", \\\\) when the result is clean UTF-8 text."""
    if "\\" not in text:
        return text

    def sub(m: re.Match[bytes]) -> bytes:
        esc = m.group(1)
        if len(esc) == 3:
            return bytes((int(esc[1:], 16),))
        if esc in (b'"', b"\\"):
            return esc
        return m.group(0)

    try:
        out = _ESCAPE.sub(sub, text.encode("utf-8")).decode("utf-8")
    except UnicodeDecodeError:
        return text
    return text if _CONTROL.search(out) else out


@lru_cache(maxsize=4096)
def _ip(text: str) -> str | None:
    """`text` if it is an IPv4/IPv6 address (as logged), else None. Cached: clients repeat."""
    if not text or len(text) > 45:
        return None
    try:
        ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone id is allowed
    except ValueError:
        return None
    return text


def _strip_port(entry: str) -> str:
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


@lru_cache(maxsize=4096)
def _timestamp(text: str, tz: ZoneInfo) -> str:
    """`10/Oct/2026:13:55:36 +0700` -> `2026-10-10T06:55:36Z`. Cached: busy logs repeat each second."""
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise ParseError(f"timestamp [{text}] is not dd/Mon/yyyy:HH:MM:SS ±hhmm")
    day, mon, year, hh, mm, ss, frac, sign, oh, om = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        raise ParseError(f"timestamp [{text}]: unknown month {mon!r}")
    zone: timezone | ZoneInfo = tz
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om))
        zone = timezone(-offset if sign == "-" else offset)
    try:
        dt = datetime(
            int(year),
            month,
            int(day),
            int(hh),
            int(mm),
            int(ss),
            int(frac.ljust(6, "0")) if frac else 0,
            tzinfo=zone,
        )
    except ValueError as e:
        raise ParseError(f"timestamp [{text}]: {e}") from None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _diagnose(line: str) -> str:
    """Why `line` is not an access-log line: the first mandatory part that is missing."""
    if not line.strip():
        return "empty line"
    expected = 'expected: client ident user [time] "request" status bytes ["referrer" "user-agent"]'
    open_b, close_b = line.find(" ["), line.find("] ")
    if open_b == -1 or close_b < open_b:
        return f"no [time] field; {expected}"
    if len(line[:open_b].split(" ")) not in (3, 4):
        return f"expected client, ident and user before [time], got {line[:open_b]!r}; {expected}"
    after = line[close_b + 2 :]
    if not after.startswith('"'):
        return f'no quoted "request" after [time]; {expected}'
    m = re.match(_Q + r" ?(\S*) ?(\S*)", after)
    if m is None:
        return f'the quoted "request" is not closed; {expected}'
    status, size = m.group(2), m.group(3)
    if not re.fullmatch(r"\d{3}", status):
        return f"status {status!r} is not a 3-digit HTTP status; {expected}"
    if not re.fullmatch(r"\d+|-", size):
        return f"response size {size!r} is not a number or '-'; {expected}"
    return f"unreadable access-log line; {expected}"
