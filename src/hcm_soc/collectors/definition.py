"""Source definitions: one YAML file per monitored city system or feed in `collectors/`.

    name: cong-dich-vu-cong-nginx        # unique, used in ids and hcm.source
    type: file                           # syslog | file | evtx | http | network
    enabled: true
    format: nginx                        # a parser name (hcm-soc ingest --help lists them)
    dataset: nginx.access                # default: the format's dataset
    timezone: Asia/Ho_Chi_Minh           # for timestamps without a zone
    tags: [portal, internet-facing]
    labels: {department: "Sở TT&TT", sector: administration, system: cong-dich-vu-cong}
    host: {name: dvc-portal-01}          # static host.* (optional)
    file: {paths: [/var/log/nginx/access.log*], start_at: beginning}

Every problem is reported with the file, the line and the key, and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hcm_soc.errors import HcmSocError, SourceLocation
from hcm_soc.userfiles import check_timezone, key_lines


class DefinitionError(HcmSocError):
    """One or more collectors/ files are invalid; every problem has file:line: key."""

    exit_code = 2

    def __init__(self, problems: list[tuple[SourceLocation, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{loc}: {msg}" for loc, msg in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyslogInput(_Strict):
    protocol: Literal["udp", "tcp", "tls"] = "udp"
    listen: str = Field(default="0.0.0.0:5514", description="host:port; [::1]:port for IPv6")
    #: tcp/tls framing: auto-detects RFC 6587 octet counting per message, else newline
    framing: Literal["auto", "newline", "octet"] = "auto"
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    #: TLS (RFC 5425): certificate and key of this listener, PEM files
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # require client certificates signed by this CA

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 0.0.0.0:5514 or [::1]:5514, got {v!r}")
        return v

    @model_validator(mode="after")
    def _tls(self) -> SyslogInput:
        if self.protocol == "tls" and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("protocol tls needs tls_cert and tls_key (PEM files)")
        return self


class MultilineSpec(_Strict):
    """Lines that do not match `start` belong to the record before them (stack traces, …)."""

    start: str = Field(description="regular expression matching the first line of a record")
    max_lines: int = Field(default=500, ge=1)
    timeout: float = Field(default=2.0, gt=0, description="seconds to wait for continuation lines")


class FileInput(_Strict):
    paths: list[str] = Field(min_length=1, description="files or globs, followed like tail -F")
    start_at: Literal["beginning", "end"] = "beginning"
    encoding: str = "utf-8"
    multiline: MultilineSpec | None = None
    poll_interval: float = Field(default=0.5, gt=0)
    #: where offsets are kept (default: <state dir>/offsets/<name>.json)
    offsets_file: Path | None = None


class EvtxInput(_Strict):
    paths: list[str] = Field(min_length=1, description="EVTX files or globs")


class HttpInput(_Strict):
    listen: str = "127.0.0.1:8088"
    #: name of the environment variable holding this source's token (never the token itself)
    token_env: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)


class NetworkInput(_Strict):
    """Live capture from an interface (a SPAN/mirror port); needs root or CAP_NET_RAW."""

    interface: str = Field(min_length=1, description="interface name, e.g. eth1 or lo")
    bpf_filter: str | None = Field(default=None, description="tcpdump-style filter, e.g. 'not port 22'")
    snaplen: int = Field(default=65535, ge=64, le=262144)
    promiscuous: bool = True
    #: overrides settings.network.internal_networks for this segment
    internal_networks: list[str] | None = None

    @field_validator("internal_networks")
    @classmethod
    def _cidrs(cls, v: list[str] | None) -> list[str] | None:
        import ipaddress

        for item in v or []:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"expected CIDR ranges like 10.0.0.0/8, got {item!r}") from None
        return v


_SECTIONS = ("syslog", "file", "evtx", "http", "network")


class SourceDefinition(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)
    type: Literal["syslog", "file", "evtx", "http", "network"]
    enabled: bool = True
    format: str = Field(default="", description="a parser name; not used by type network")
    dataset: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.]*$")
    timezone: str = "Asia/Ho_Chi_Minh"
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    observer: dict[str, Any] = Field(default_factory=dict)
    #: options of the format, e.g. the field map of jsonl
    options: dict[str, Any] = Field(default_factory=dict)
    syslog: SyslogInput | None = None
    file: FileInput | None = None
    evtx: EvtxInput | None = None
    http: HttpInput | None = None
    network: NetworkInput | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _section(self) -> SourceDefinition:
        section = getattr(self, self.type)
        others = [t for t in _SECTIONS if t != self.type and getattr(self, t) is not None]
        if others:
            raise ValueError(f"type {self.type} takes a '{self.type}:' section, not {', '.join(others)}")
        if self.type == "network":
            if self.format:
                raise ValueError("type network decodes packets itself: remove 'format'")
        elif not self.format:
            raise ValueError("required key 'format' is missing (hcm-soc collectors formats lists them)")
        if section is None:
            if self.type in ("file", "evtx", "http", "network"):
                raise ValueError(f"type {self.type} needs a '{self.type}:' section")
            object.__setattr__(self, "syslog", SyslogInput())
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_definition(
    path: Path, known_formats: set[str] | None = None, *, check_paths: bool = True
) -> SourceDefinition:
    """Read and validate one definition; DefinitionError lists every problem with file:line: key.
    `check_paths` also requires the folder of every file path (the fixed part of a glob) to exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        lines = key_lines(text)
    except FileNotFoundError:
        raise DefinitionError([(SourceLocation(str(path)), "file does not exist")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DefinitionError(
            [
                (
                    SourceLocation(str(path), mark.line + 1 if mark else None),
                    f"not valid YAML: {getattr(e, 'problem', e)}",
                )
            ]
        ) from None
    if not isinstance(data, dict):
        raise DefinitionError(
            [(SourceLocation(str(path), 1), "expected a mapping (name:, type:, format:, …)")]
        )
    problems: list[tuple[SourceLocation, str]] = []
    try:
        definition = SourceDefinition.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(x) for x in err["loc"] if not isinstance(x, int))
            line = lines.get(key) or lines.get(key.rsplit(".", 1)[0]) if key else None
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] not in ("value_error",) and not isinstance(err.get("input"), dict):
                msg = f"{msg}, got {err.get('input')!r}"
            problems.append((SourceLocation(str(path), line, key or None), msg))
        raise DefinitionError(problems) from None
    if known_formats is not None and definition.type != "network" and definition.format not in known_formats:
        problems.append(
            (
                SourceLocation(str(path), lines.get("format"), "format"),
                f"unknown format {definition.format!r}; expected one of {', '.join(sorted(known_formats))}",
            )
        )
    if check_paths and definition.type in ("file", "evtx"):
        section = definition.file if definition.type == "file" else definition.evtx
        assert section is not None
        for p in section.paths:
            fixed = Path(p.split("*")[0].split("?")[0].split("[")[0] or ".")
            folder = fixed if p.endswith(("/", "*")) and fixed.is_dir() else fixed.parent
            if not folder.is_dir():
                problems.append(
                    (
                        SourceLocation(
                            str(path), lines.get(f"{definition.type}.paths"), f"{definition.type}.paths"
                        ),
                        f"the folder of {p!r} does not exist",
                    )
                )
    if problems:
        raise DefinitionError(problems)
    return definition


def load_definitions(
    directory: Path, known_formats: set[str] | None = None, *, check_paths: bool = True
) -> tuple[list[SourceDefinition], list[DefinitionError]]:
    """Every *.yml/*.yaml in `directory`; one broken file never stops the others."""
    good: list[SourceDefinition] = []
    bad: list[DefinitionError] = []
    names: dict[str, Path] = {}
    for path in sorted([*Path(directory).glob("*.yml"), *Path(directory).glob("*.yaml")]):
        try:
            d = load_definition(path, known_formats, check_paths=check_paths)
        except DefinitionError as e:
            bad.append(e)
            continue
        if d.name in names:
            bad.append(
                DefinitionError(
                    [
                        (
                            SourceLocation(str(path), None, "name"),
                            f"name {d.name!r} is already used by {names[d.name]}",
                        )
                    ]
                )
            )
            continue
        names[d.name] = path
        good.append(d)
    return good, bad
