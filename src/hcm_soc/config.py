"""Typed settings: environment variables (HCM_SOC_*) over an optional YAML file over defaults.

Every setting has a dotted name (``es.url``) and an environment variable made
from it (``HCM_SOC_ES_URL``). Settings are built once at start (`load_settings`)
and passed down; a wrong or missing value fails there with a message naming the
setting, where it came from and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hcm_soc.errors import ConfigError
from hcm_soc.userfiles import check_timezone, key_lines

ENV_PREFIX = "HCM_SOC_"
#: Variables with our prefix that are not settings (read by tests, CI or the launcher).
NON_SETTING_ENV = frozenset(
    {
        "HCM_SOC_CONFIG",
        "HCM_SOC_TEST_ES_URL",
        "HCM_SOC_SIGMAHQ_DIR",
        "HCM_SOC_EVTX_DIR",
        "HCM_SOC_KEEP_NODE",
        "HCM_SOC_PURE_PYTHON",
    }
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.]*$")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ElasticsearchSettings(_Group):
    """How to reach Elasticsearch. No `url` means: use the local development node."""

    url: list[str] = Field(default_factory=list, description="cluster URL(s), comma-separated in the env")
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_cert: Path | None = None
    verify_tls: bool = True
    request_timeout: float = Field(default=30.0, gt=0)

    @field_validator("url", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u.strip() for u in v.split(",") if u.strip()]
        return v

    @field_validator("url")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"expected an http(s) URL like https://es.example.gov.vn:9200, got {u!r}")
        return urls

    @field_validator("ca_cert")
    @classmethod
    def _ca_exists(cls, p: Path | None) -> Path | None:
        if p is not None and not p.is_file():
            raise ValueError(f"expected the path of a readable PEM file, {str(p)!r} does not exist")
        return p

    @model_validator(mode="after")
    def _auth_pairs(self) -> ElasticsearchSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("es.username and es.password must be given together")
        if self.api_key and self.username:
            raise ValueError("give either es.api_key or es.username/es.password, not both")
        return self


class LocalNodeSettings(_Group):
    """The development node that `hcm-soc es start` runs (only when es.url is empty)."""

    port: int = Field(default=9200, ge=1024, le=65535)
    heap: str = Field(default="1g", pattern=r"^\d+[mg]$")
    cluster_name: str = Field(default="hcm-soc-dev", pattern=r"^[A-Za-z0-9_-]+$")
    state_dir: Path | None = None  # default: $XDG_STATE_HOME/hcm-soc or ~/.local/state/hcm-soc
    start_timeout: float = Field(default=180.0, gt=0)


class IndexSettings(_Group):
    """Names of everything hcm-soc stores: `<prefix>-events-<dataset>-<namespace>`, `<prefix>-alerts`, …"""

    prefix: str = "hcm"
    namespace: str = "default"
    shards: int = Field(default=1, ge=1)
    replicas: str = "0-1"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _NAME_RE.match(v) or len(v) > 40:
            raise ValueError(
                "expected lowercase letters, digits, '_' or '.', starting with a letter or digit "
                f"(at most 40 characters), got {v!r}"
            )
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _NAME_RE.match(v) or "-" in v or len(v) > 100:
            raise ValueError(f"expected lowercase letters, digits, '_' or '.' (no '-'), got {v!r}")
        return v


class PathSettings(_Group):
    rules: list[Path] = Field(default_factory=lambda: [Path("rules")])
    playbooks: Path = Path("playbooks")
    collectors: Path = Path("collectors")
    inventory: Path = Path("inventory/city-systems.yml")  # the asset inventory (YAML or CSV)

    @field_validator("rules", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p for p in v.split(os.pathsep) if p]
        return v


class BulkSettings(_Group):
    max_docs: int = Field(default=5000, ge=1)
    max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    flush_interval: float = Field(default=1.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    spool_dir: Path | None = None  # default: <state dir>/spool
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)


class SmtpSettings(_Group):
    host: str | None = None
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    sender: str = "soc@hcm.gov.vn"
    timeout: float = Field(default=10.0, gt=0)
    ca_cert: Path | None = None  # CA bundle that signed the server's certificate (default: system CAs)
    verify_tls: bool = True


class WebhookSettings(_Group):
    secret: str | None = None  # HMAC-SHA256 key of outgoing webhooks (default: notify.secret)
    timeout: float = Field(default=10.0, gt=0)


class NotifySettings(_Group):
    """Notices to system owners and analysts (email, webhook) and their durable outbox."""

    # signs acknowledgement tokens (and webhooks unless webhook.secret is set); when unset a random
    # key is created once in <state dir>/notify.key so links stay valid across restarts
    secret: str | None = None
    base_url: str = "http://127.0.0.1:8080"  # where acknowledgement links point (the web console)
    token_ttl: float = Field(default=7 * 86400.0, gt=0)  # seconds an acknowledgement link stays valid
    language: Literal["vi", "en"] = "vi"  # default language of notices
    retry_base: float = Field(default=30.0, gt=0)  # first retry of an undelivered notice after this…
    retry_max: float = Field(default=3600.0, gt=0)  # …doubling up to this many seconds between tries
    max_attempts: int = Field(default=50, ge=1)  # then the notice is marked failed (still kept)
    deliver_every: float = Field(default=10.0, gt=0)  # seconds between outbox passes of `hcm-soc run`
    analysts: list[str] = Field(default_factory=list)  # e-mail of the analyst on duty (queue) recipients
    escalation: list[str] = Field(default_factory=list)  # e-mail of the escalation list

    @field_validator("analysts", "escalation", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v


class WebSettings(_Group):
    """The web console and REST API (`hcm-soc web`, part of `hcm-soc run`)."""

    enabled: bool = True  # `hcm-soc run` serves the console too
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    session_ttl: float = Field(default=8 * 3600.0, gt=0)  # seconds a login lasts without activity
    secure_cookies: bool = False  # set True behind HTTPS (the Secure cookie flag)
    login_max_failures: int = Field(default=5, ge=1)  # failed logins per user and address before a pause
    login_lockout: float = Field(default=300.0, gt=0)  # seconds of that pause


class ResponseSettings(_Group):
    """Playbooks and incidents."""

    enabled: bool = True  # `hcm-soc run` runs the playbooks on new alerts
    every: float = Field(default=15.0, gt=0)  # seconds between passes over new alerts
    escalate_every: float = Field(default=60.0, gt=0)  # seconds between SLA / auto-close checks
    batch: int = Field(default=500, ge=1)  # alerts taken per pass
    id_prefix: str = Field(default="INC", pattern=r"^[A-Z][A-Z0-9]{0,9}$")  # INC-2026-000123


class DetectionSettings(_Group):
    """The scheduled Sigma engine: defaults a rule may override with its own custom attributes."""

    interval: float = Field(default=60.0, gt=0)  # seconds between runs of a rule
    safety_margin: float = Field(default=30.0, ge=0)  # a run looks at event.ingested < now - margin
    max_chunk: float = Field(default=3600.0, gt=0)  # an outage is caught up in windows of at most this
    initial_lookback: float = Field(default=3600.0, ge=0)  # a rule's first run starts this far back
    max_alerts_per_run: int = Field(default=1000, ge=1)
    jitter: float = Field(default=5.0, ge=0)  # seconds of random delay added to each scheduled run
    retry_backoff_max: float = Field(default=600.0, gt=0)  # longest wait before retrying a failed rule
    max_alerts_per_group: int = Field(default=100, ge=1)  # per rule, run and group key; then a summary
    batch: bool = True  # evaluate a job's detection rules together (_msearch) instead of one search each
    backfill_horizon: float = Field(default=7 * 86400.0, ge=0)  # seconds: ledger holes this recent are filled
    backfill_every: float = Field(default=300.0, gt=0)  # seconds between hole searches of one job's rules
    backfill_max_windows: int = Field(default=20, ge=1)  # holes evaluated per search (the rest: next time)
    lease: bool = True  # only the holder of the engine lease evaluates (a second engine waits as standby)
    lease_ttl: float = Field(default=30.0, gt=0)  # a lease not renewed for this long may be taken over
    lease_renew: float = Field(default=5.0, gt=0)  # the holder renews (a standby polls) this often
    engine_id: str | None = None  # this engine's name in the lease and the ledger (default host:pid)
    # seconds between checks for changed rule files and console rules (the running engine reloads them)
    reload_every: float = Field(default=30.0, gt=0)
    # the built-in silent-source check (see docs/detection-lint.md)
    silence_check: bool = True
    silence_every: float = Field(default=300.0, gt=0)  # seconds between checks
    silence_baseline: float = Field(default=7 * 86400.0, gt=0)  # history a source's usual rate is taken from
    silence_bucket: float = Field(default=3600.0, gt=0)  # histogram bucket of that history
    silence_gap_factor: float = Field(default=3.0, gt=1)  # silent after this many usual gaps…
    silence_floor: float = Field(default=900.0, ge=0)  # …and at least this many seconds
    silence_min_events: int = Field(default=5, ge=1)  # sources with fewer events are not judged
    silence_min_history: float = Field(default=3600.0, ge=0)  # nor sources seen for less than this

    @model_validator(mode="after")
    def _lease_timing(self) -> DetectionSettings:
        # the holder must get at least two renewals in before its lease could lapse
        if self.lease_renew * 2 > self.lease_ttl:
            raise ValueError(
                f"lease_renew ({self.lease_renew:g}s) must be at most half of lease_ttl ({self.lease_ttl:g}s)"
            )
        return self


class NetworkSettings(_Group):
    """The network metadata collector."""

    # the city's own address ranges: they decide network.direction (internal/inbound/outbound/external)
    internal_networks: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    )
    max_flows: int = Field(default=200_000, ge=1000)  # flow table cap; the oldest is emitted when full
    active_timeout: float = Field(default=1800.0, gt=0)  # a long flow is emitted (and continued) after this
    idle_timeout: float = Field(
        default=60.0, gt=0
    )  # a flow with no packet for this long is emitted (TCP/UDP)

    @field_validator("internal_networks", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("internal_networks")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"expected CIDR ranges like 10.0.0.0/8, got {item!r}") from None
        return v


class Settings(_Group):
    """All settings of hcm-soc. Build with `load_settings`."""

    es: ElasticsearchSettings = ElasticsearchSettings()
    local_es: LocalNodeSettings = LocalNodeSettings()
    index: IndexSettings = IndexSettings()
    paths: PathSettings = PathSettings()
    bulk: BulkSettings = BulkSettings()
    smtp: SmtpSettings = SmtpSettings()
    webhook: WebhookSettings = WebhookSettings()
    notify: NotifySettings = NotifySettings()
    response: ResponseSettings = ResponseSettings()
    web: WebSettings = WebSettings()
    detection: DetectionSettings = DetectionSettings()
    network: NetworkSettings = NetworkSettings()
    timezone: str = "Asia/Ho_Chi_Minh"
    log_format: Literal["text", "json"] = "text"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @property
    def state_dir(self) -> Path:
        if self.local_es.state_dir is not None:
            return self.local_es.state_dir
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "hcm-soc"

    @property
    def spool_dir(self) -> Path:
        return self.bulk.spool_dir or self.state_dir / "spool"

    @property
    def uses_local_node(self) -> bool:
        return not self.es.url


def env_var(dotted: str) -> str:
    """`es.url` -> `HCM_SOC_ES_URL`."""
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def setting_names() -> dict[str, str]:
    """Every settable dotted name -> its environment variable."""
    names: dict[str, str] = {}
    for group, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub in ann.model_fields:
                names[f"{group}.{sub}"] = env_var(f"{group}.{sub}")
        else:
            names[group] = env_var(group)
    return names


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        node = data.setdefault(head, {})
        if not isinstance(node, dict):
            node = data[head] = {}
        node[rest] = value
    else:
        data[head] = value


def load_settings(env: Mapping[str, str] | None = None, config_file: Path | str | None = None) -> Settings:
    """Build settings from `env` (default os.environ) and the YAML file named by
    `config_file` or HCM_SOC_CONFIG. Raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    names = setting_names()
    by_env = {v: k for k, v in names.items()}
    origin: dict[str, str] = {}
    data: dict[str, Any] = {}
    problems: list[str] = []
    yaml_lines: dict[str, int] = {}

    path: Path | str | None = config_file or env.get("HCM_SOC_CONFIG")
    if path:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            loaded = yaml.safe_load(text) or {}
            yaml_lines = key_lines(text)
        except FileNotFoundError:
            raise ConfigError([f"configuration file {p} (HCM_SOC_CONFIG): the file does not exist"]) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark else str(p)
            raise ConfigError([f"{where}: not valid YAML ({getattr(e, 'problem', e)})"]) from None
        if not isinstance(loaded, dict):
            raise ConfigError([f"{p}: expected a mapping of settings at the top level"])
        data = loaded
        for dotted, line in yaml_lines.items():
            origin[dotted] = f"{p}:{line}"

    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in NON_SETTING_ENV:
            continue
        setting = by_env.get(key)
        if setting is None:
            close = [e for e in names.values() if _similar(e, key)]
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{key}: not a hcm-soc setting{hint} (known: hcm-soc config show --names)")
            continue
        _set_dotted(data, setting, value)
        origin[setting] = f"env {key}"

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int))
            where = origin.get(loc) or origin.get(loc.rsplit(".", 1)[0]) or f"env {env_var(loc)}"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown setting; expected one of: {', '.join(sorted(names))}"
            elif "input" in err and err["type"] != "value_error" and not isinstance(err["input"], dict):
                msg = f"{msg}, got {err['input']!r}"
            problems.append(f"setting {loc} ({where}): {msg}")
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings


def _similar(a: str, b: str) -> bool:
    """Cheap typo detector: same length +-1 and at most two differing characters."""
    if abs(len(a) - len(b)) > 1:
        return False
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() > 0.85
