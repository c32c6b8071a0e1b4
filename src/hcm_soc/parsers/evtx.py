"""Windows event log records (EVTX) to ECS, shaped like Winlogbeat 8.

The input is one record as the `evtx` package decodes it (the collector turns its
JSON text into a dict): `{"event_record_id", "timestamp", "data": {"Event": {...}}}`.
The output is what Winlogbeat and its sysmon/security/powershell module pipelines
would store: `winlog.*` (System values, every EventData item as a string under
`winlog.event_data`, UserData under `winlog.user_data`), `event.code` and
`winlog.event_id` as strings, `@timestamp` from System/TimeCreated in UTC, and the
ECS fields (process, user, file, registry, network, dns, powershell) that pySigma's
`ecs_windows` pipeline queries. Which item goes where is data, in `winlog_fields`.

EVTX files carry no rendered message (that needs the provider's DLL on a Windows
host), so `message` is absent; `event.original` (added by the envelope) keeps the record.

For detection cost, Sysmon's `Hashes`/`Hash` items also become `hcm.hashes`/`hcm.hash`: every
`algo=<full-length hex>` token in them, lower-cased (`hash_tokens`), so that a Sigma
`Hashes|contains: 'MD5=<hash>'` is an exact term look-up (docs/detection-cost.md).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from hcm_soc.parsers import winlog_fields as wf
from hcm_soc.parsers.base import Event, ParseContext, ParseError

_GUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
#: EventData items that Windows renders as braced GUIDs; the Rust parser drops the braces
_GUID_ITEMS = frozenset(
    {
        "ProcessGuid",
        "ParentProcessGuid",
        "SourceProcessGuid",
        "SourceProcessGUID",
        "TargetProcessGuid",
        "TargetProcessGUID",
        "LogonGuid",
        "TargetLogonGuid",
        "ParentProcessGUID",
    }
)
_HIVES = frozenset({"HKLM", "HKU", "HKCU", "HKCR", "HKCC"})
_DNS_TYPES = {
    "1": "A",
    "2": "NS",
    "5": "CNAME",
    "6": "SOA",
    "12": "PTR",
    "15": "MX",
    "16": "TXT",
    "28": "AAAA",
    "33": "SRV",
}
_LONG_MAX = 2**63 - 1


# --- value converters (named in winlog_fields' rules) ----------------------------------------
def _long(s: str) -> int | None:
    try:
        n = int(s, 16) if s[:2].lower() == "0x" else int(s)
    except ValueError:
        return None
    return n if -_LONG_MAX - 1 <= n <= _LONG_MAX else None


def _port(s: str) -> int | None:
    n = _long(s)
    return n if n is not None and 0 <= n <= 65535 else None


def _ip(s: str) -> str | None:
    s = s.strip().split("%", 1)[0]  # drop an IPv6 zone index ("fe80::1%12"): the ip type refuses it
    if s.lower().startswith("::ffff:") and "." in s:
        s = s[7:]  # an IPv4-mapped address is stored as the IPv4 address, as Winlogbeat does
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return None
    return s


def _basename(s: str) -> str | None:
    name = re.split(r"[\\/]", s.rstrip("\\/"))[-1]
    return name or None


def _dirname(s: str) -> str | None:
    head, sep, _ = s.rstrip("\\/").rpartition("\\")
    if not sep:
        head, sep, _ = s.rpartition("/")
    return head if sep and head else None


def _extension(s: str) -> str | None:
    name = _basename(s) or ""
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem and ext else None


def _guid(s: str) -> str:
    return f"{{{s}}}" if _GUID_RE.match(s) else s


def _domain_user(s: str) -> dict[str, str] | None:
    domain, sep, name = s.partition("\\")
    if not sep:
        return {"name": s}
    out = {"name": name} if name else {}
    if domain:
        out["domain"] = domain
    return out or None


def _hash_pairs(s: str) -> dict[str, str]:
    pairs = {}
    for part in s.split(","):
        algo, sep, digest = part.partition("=")
        if sep and digest.strip():
            pairs[algo.strip().lower()] = digest.strip().lower()
    return pairs


def _hashes(s: str) -> dict[str, str] | None:
    out = {k: v for k, v in _hash_pairs(s).items() if k in ("md5", "sha1", "sha256", "sha384", "sha512")}
    return out or None


def _imphash(s: str) -> str | None:
    return _hash_pairs(s).get("imphash")


#: hex digits of each algorithm Sysmon writes in `Hashes`/`Hash` ("SHA1=…,MD5=…,IMPHASH=…")
HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128, "imphash": 32}
_HASH_TOKEN_RE = re.compile(r"(?=(md5|sha1|sha256|sha384|sha512|imphash)=([0-9a-f]+))")
#: the ignore_above of the dynamic `.caseless` sub-field that a `Hashes|contains` query reads
_CASELESS_IGNORE_ABOVE = 8191
#: EventData item -> the `hcm.*` field that holds its hash tokens
HASH_TOKEN_FIELDS = {"Hashes": "hashes", "Hash": "hash"}


def hash_tokens(s: str) -> list[str]:
    """Every `algo=<full-length hex>` found anywhere in a Sysmon hashes value, lower-cased.

    A Sigma `Hashes|contains: 'MD5=<32 hex>'` holds exactly when its lower-cased value is in this
    list: each occurrence of `algo=` followed by at least the algorithm's length of hex digits
    gives `algo=` and that many digits (overlapping and mid-word occurrences included), so the
    detection compiler can ask for an exact term instead of a `*md5=…*` wildcard. Values the
    `.caseless` sub-field does not index (longer than its ignore_above) give none, as they
    match no wildcard either."""
    if len(s) > _CASELESS_IGNORE_ABOVE:
        return []
    # the lowercase normalizer maps U+0130 to "i" where Python's lower() gives "i" + U+0307
    low = s.replace("\u0130", "i").lower()
    out: list[str] = []
    for m in _HASH_TOKEN_RE.finditer(low):
        algo, digits = m.group(1), m.group(2)
        n = HASH_LENGTHS[algo]
        if len(digits) >= n and (token := f"{algo}={digits[:n]}") not in out:
            out.append(token)
    return out


def _registry(s: str, *, with_value: bool = True) -> dict[str, str]:
    out = {"path": s}
    hive, sep, rest = s.partition("\\")
    if sep and hive.upper() in _HIVES:
        out["hive"] = hive.upper()
    else:
        rest = s
    if with_value and "\\" in rest:
        key, _, value = rest.rpartition("\\")
        out["key"], out["value"] = key, value
    elif rest:
        out["key"] = rest
    return out


def _bool(s: str) -> bool | None:
    low = s.strip().lower()
    return True if low in ("true", "1") else False if low in ("false", "0") else None


def _either(s: str, if_true: str, if_false: str) -> str | None:
    flag = _bool(s)
    return None if flag is None else if_true if flag else if_false


def _args(s: str) -> list[str] | None:
    """Split a Windows command line as CommandLineToArgvW does (quotes, backslashes before quotes)."""
    args: list[str] = []
    cur: list[str] = []
    quoted = started = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            j = i
            while j < n and s[j] == "\\":
                j += 1
            if j < n and s[j] == '"':
                cur.append("\\" * ((j - i) // 2))
                if (j - i) % 2:
                    cur.append('"')
                    j += 1
            else:
                cur.append("\\" * (j - i))
            started, i = True, j
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif c in " \t" and not quoted:
            if started:
                args.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(c)
            started = True
        i += 1
    if started:
        args.append("".join(cur))
    return args or None


def _dns_results(s: str) -> dict[str, Any] | None:
    ips: list[str] = []
    answers: list[dict[str, str]] = []
    for part in s.split(";"):
        part = part.strip()
        if part.startswith("type:"):
            code, _, data = part[5:].strip().partition(" ")
            if data.strip():
                answers.append({"type": _DNS_TYPES.get(code, code), "data": data.strip()})
        elif part and (ip := _ip(part)) is not None:
            ips.append(ip)
            answers.append({"type": "AAAA" if ":" in ip else "A", "data": ip})
    out: dict[str, Any] = {}
    if ips:
        out["resolved_ip"] = ips
    if answers:
        out["answers"] = answers
    return out or None


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": lambda s: s,
    "lower": str.lower,
    "long": _long,
    "port": _port,
    "ip": _ip,
    "basename": _basename,
    "dirname": _dirname,
    "extension": _extension,
    "guid": _guid,
    "domain_user": _domain_user,
    "hashes": _hashes,
    "imphash": _imphash,
    "registry": _registry,
    "registry_key": lambda s: _registry(s, with_value=False),
    "list": lambda s: [s],
    "bool": _bool,
    "direction": lambda s: _either(s, "egress", "ingress"),
    "ip_version": lambda s: _either(s, "ipv6", "ipv4"),
    "logon_type": lambda s: wf.LOGON_TYPES.get(s, s),
    "args": _args,
    "dns_results": _dns_results,
}


# --- the record's structure -------------------------------------------------------------------
def _attrs(node: Any) -> Mapping[str, Any]:
    if isinstance(node, Mapping):
        attrs = node.get("#attributes")
        if isinstance(attrs, Mapping):
            return attrs
    return {}


def _text(node: Any) -> Any:
    return node.get("#text") if isinstance(node, Mapping) else node


def _string(value: Any) -> str:
    """An item's value as Winlogbeat stores it: text, Windows line endings made Unix."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.replace("\r\n", "\n")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping) and "#text" in value:
        return _string(value["#text"])
    if isinstance(value, list):
        return "\n".join(_string(v) for v in value)
    return orjson.dumps(value).decode()


def _event_data(node: Any) -> tuple[dict[str, Any], list[str]]:
    """EventData as Winlogbeat's `event_data` (named items; unnamed ones as paramN by position,
    empty values left out) and the list of unnamed values."""
    pairs: dict[str, Any] = {}
    unnamed: list[str] = []
    if node is None:
        return pairs, unnamed
    if not isinstance(node, Mapping):
        node = {"Data": node}
    position = 0
    for key, value in node.items():
        if key == "#attributes":
            continue
        if key in ("Data", "#text"):
            items = value.get("#text") if isinstance(value, Mapping) else value
            for item in items if isinstance(items, list) else [items]:
                position += 1
                text = _string(item)
                unnamed.append(text)
                if text:
                    pairs.setdefault(f"param{position}", text)
            continue
        position += 1
        text = _string(value)
        if text:
            pairs[key] = _guid(text) if key in _GUID_ITEMS else text
    return pairs, unnamed


def _flatten(node: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        if key == "#attributes":
            continue
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, Mapping) and "#text" not in value:
            _flatten(value, name, out)
        else:
            text = _string(value)
            if text:
                out[name] = text


def _user_data(node: Any) -> dict[str, str]:
    """UserData's one child element flattened, with its name as `xml_name` (as Winlogbeat does)."""
    out: dict[str, str] = {}
    if not isinstance(node, Mapping):
        return out
    for name, child in node.items():
        if name == "#attributes":
            continue
        out.setdefault("xml_name", name)
        if isinstance(child, Mapping):
            _flatten(child, "", out)
        elif (text := _string(child)) != "":
            out[name] = text
    return out


def _details(text: str) -> dict[str, str]:
    """The "Key=Value" lines of Windows PowerShell events and the "Key = Value" lines of
    4103's ContextInfo, keys made like the Sigma field names (HostApplication, RunspaceId, …)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        key = key.strip().replace(" ", "")
        if not sep or not key.isalnum():
            continue
        if key.endswith("ID") and key != "ShellID":
            key = key[:-2] + "Id"
        value = value.strip()
        if value:
            out.setdefault(key, value)
    return out


# --- building the event -----------------------------------------------------------------------
def _put(event: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `dotted` unless already set; a mapping value is merged the same way."""
    *parents, leaf = dotted.split(".")
    node = event
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return
        node = child
    if isinstance(value, Mapping):
        target = node.setdefault(leaf, {})
        if isinstance(target, dict):
            for k, v in value.items():
                _put(target, k, v)
    else:
        node.setdefault(leaf, value)


def _apply(event: Event, rules: Iterable[wf.FieldRule], items: Mapping[str, Any]) -> None:
    for name, target, conv in rules:
        raw = items.get(name)
        if not isinstance(raw, str) or raw in ("", "-"):
            continue
        value = _CONVERTERS[conv](raw)
        if value is not None:
            _put(event, target, value)


def _time(system: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    for candidate in (_attrs(system.get("TimeCreated")).get("SystemTime"), record.get("timestamp")):
        if isinstance(candidate, str) and candidate:
            try:
                dt = datetime.fromisoformat(candidate.removesuffix(" UTC").replace("Z", "+00:00"))
            except ValueError:
                continue
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)  # EVTX times are UTC (FILETIME)
            return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raise ParseError("System/TimeCreated has no readable SystemTime and the record no timestamp")


def _event_id(system: Mapping[str, Any]) -> int:
    raw = _text(system.get("EventID"))
    if isinstance(raw, bool) or raw is None or raw == "":
        raise ParseError("the record has no System/EventID")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ParseError(f"System/EventID is not a number: {raw!r}") from None


def _keywords(raw: Any) -> list[str] | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        mask = int(raw, 16)
    except ValueError:
        return [raw]
    if mask == 0:
        return None
    names = [name for bit, name in wf.KEYWORDS.items() if mask & bit]
    return names or [raw]


def _event_dict(record: Any) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise ParseError(f"expected a decoded EVTX record (a mapping), got {type(record).__name__}")
    data = record.get("data", record)
    if isinstance(data, str | bytes):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise ParseError(f"the record's data is not JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise ParseError("the record's data is not a mapping")
    event = data.get("Event", data)
    if not isinstance(event, Mapping) or not isinstance(event.get("System"), Mapping):
        raise ParseError("the record has no System element")
    return event


def parse_evtx_record(record: Any, ctx: ParseContext) -> Event:
    """One decoded EVTX record -> Winlogbeat-shaped ECS fields; ParseError without System/EventID."""
    xml = _event_dict(record)
    system: Mapping[str, Any] = xml["System"]
    event_id = _event_id(system)
    provider = _attrs(system.get("Provider"))
    channel = _text(system.get("Channel"))
    computer = _text(system.get("Computer"))
    module = wf.CHANNEL_MODULES.get(channel) if isinstance(channel, str) else None

    event_data, unnamed = _event_data(xml.get("EventData"))
    if isinstance(xml.get("ProcessingErrorData"), Mapping):
        event_data.update(_event_data(xml["ProcessingErrorData"])[0])
    user_data = _user_data(xml.get("UserData"))
    items: dict[str, Any] = {**user_data, **event_data}
    if module == "powershell":
        # the details block of a Windows PowerShell event is the unnamed item whose lines are
        # "\tKey=Value"; the script text beside it may hold "x=1" lines that are no details
        blocks = [t for t in unnamed if t.lstrip("\n").startswith("\t")]
        for text in [*blocks, event_data.get("ContextInfo", "")]:
            if "=" in text:
                for key, value in _details(text).items():
                    items.setdefault(key, value)
                    event_data.setdefault(key, value)

    winlog: dict[str, Any] = {"event_id": str(event_id)}
    if isinstance(channel, str) and channel:
        winlog["channel"] = channel
    if provider.get("Name"):
        winlog["provider_name"] = str(provider["Name"])
    if provider.get("Guid"):
        winlog["provider_guid"] = _guid(str(provider["Guid"]).strip("{}"))
    if provider.get("EventSourceName"):
        winlog["event_source_name"] = str(provider["EventSourceName"])
    record_id = system.get("EventRecordID", record.get("event_record_id"))
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        winlog["record_id"] = record_id
    if isinstance(computer, str) and computer:
        winlog["computer_name"] = computer
    execution = _attrs(system.get("Execution"))
    for attr, target in (("ProcessID", "pid"), ("ThreadID", "thread")):
        if isinstance(execution.get(attr), int):
            proc = winlog.setdefault("process", {})
            proc[target] = execution[attr] if target == "pid" else {"id": execution[attr]}
    if sid := _attrs(system.get("Security")).get("UserID"):
        winlog["user"] = {"identifier": str(sid)}
    correlation = _attrs(system.get("Correlation"))
    if correlation.get("ActivityID"):
        winlog["activity_id"] = _guid(str(correlation["ActivityID"]).strip("{}"))
    if correlation.get("RelatedActivityID"):
        winlog["related_activity_id"] = _guid(str(correlation["RelatedActivityID"]).strip("{}"))
    if isinstance(system.get("Version"), int):
        winlog["version"] = system["Version"]
    meta = wf.MODULE_META.get(module or "", {}).get(event_id)
    task = system.get("Task")
    if module == "sysmon" and meta:
        winlog["task"] = meta[0]
    elif module == "security" and isinstance(task, int) and task in wf.SECURITY_TASKS:
        winlog["task"] = wf.SECURITY_TASKS[task]
    elif isinstance(task, int) and task:
        winlog["task"] = str(task)
    if isinstance(system.get("Opcode"), int):
        winlog["opcode"] = wf.OPCODES.get(system["Opcode"], str(system["Opcode"]))
    if keywords := _keywords(system.get("Keywords")):
        winlog["keywords"] = keywords
    if any(unnamed):
        # Sigma's powershell-classic rules (and ecs_windows) query `Data`, the unnamed items;
        # a list keeps each item separately indexed (and under the keyword length limit)
        event_data["Data"] = [u for u in unnamed if u]
    if event_data:
        winlog["event_data"] = event_data
    if user_data:
        winlog["user_data"] = user_data

    ev: dict[str, Any] = {"kind": "event", "code": str(event_id), "created": _iso(ctx.received)}
    if provider.get("Name"):
        ev["provider"] = str(provider["Name"])
    if module:
        ev["module"] = module
    if meta:
        ev["action"], ev["category"], ev["type"] = meta[0], list(meta[1]), list(meta[2])
    if module == "security" and keywords:
        if "Audit Success" in keywords:
            ev["outcome"] = "success"
        elif "Audit Failure" in keywords:
            ev["outcome"] = "failure"

    out: Event = {"@timestamp": _time(system, record), "event": ev, "winlog": winlog}
    if isinstance(computer, str) and computer:
        out["host"] = {"name": computer}
    if isinstance(system.get("Level"), int):
        out["log"] = {"level": wf.LEVELS.get(system["Level"], str(system["Level"]))}

    if module:
        table = wf.MODULE_RULES[module].get(event_id)
        _apply(out, table if table is not None else wf.MODULE_COMMON[module], items)
    _apply(out, wf.ECS_WINDOWS_RULES, items)
    process = out.get("process")
    if isinstance(process, dict) and isinstance(process.get("args"), list):
        process["args_count"] = len(process["args"])
    for item, target in HASH_TOKEN_FIELDS.items():
        raw = event_data.get(item)
        if isinstance(raw, str) and (tokens := hash_tokens(raw)):
            out.setdefault("hcm", {})[target] = tokens
    return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
