"""The playbook schema (`playbooks/*.yml`): the trigger condition tree, the step kinds and durations.

A playbook is validated once, when it is loaded (`hcm_soc.playbooks.loader`); the runner then works
with these typed, frozen models. Every model forbids unknown keys. A step is written in YAML as a
one-key mapping (`- notify: {...}`) and becomes the step model of that kind, with `.kind` and `.id`.
Templates (`group.key`) are compiled here in a sandboxed Jinja2 environment, so that a template with
a syntax error is a load error rather than a failure at the first alert.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from hcm_soc.inventory.model import Sector, Sensitivity
from hcm_soc.models.alert import SEVERITY
from hcm_soc.playbooks.durations import Duration, parse_duration
from hcm_soc.playbooks.durations import format_duration as format_duration  # re-exported

# --- closed sets -----------------------------------------------------------------------------------

Level = Literal["informational", "low", "medium", "high", "critical"]
LEVELS: tuple[str, ...] = ("informational", "low", "medium", "high", "critical")
Priority = Literal["P1", "P2", "P3", "P4"]
#: the notice templates helper NOT ships (vi and en each)
NoticeTemplate = Literal["incident_opened", "incident_updated", "escalation", "incident_closed"]
Language = Literal["vi", "en"]
#: symbolic recipients: inventory contact roles of the affected asset's department ...
ROLE_RECIPIENTS: tuple[str, ...] = ("owner", "technical", "escalation")
#: ... and the lists in settings (`settings.notify.analysts`, `settings.notify.escalation`)
LIST_RECIPIENTS: tuple[str, ...] = ("analysts", "escalation")
SYMBOLIC_RECIPIENTS: tuple[str, ...] = ("owner", "technical", "escalation", "analysts")

#: level × criticality (1..4) → priority, the default of `set: {priority: matrix}`
DEFAULT_MATRIX: dict[str, tuple[str, str, str, str]] = {
    "critical": ("P2", "P1", "P1", "P1"),
    "high": ("P3", "P2", "P1", "P1"),
    "medium": ("P4", "P3", "P2", "P2"),
    "low": ("P4", "P4", "P3", "P3"),
    "informational": ("P4", "P4", "P4", "P4"),
}


def level_rank(level: str | None) -> int:
    """Sigma level → 1 (informational) .. 5 (critical); 0 for an unknown or missing level."""
    return SEVERITY.get(level or "", 0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


# --- trigger conditions ---------------------------------------------------------------------------


class LevelRange(_Model):
    """`level: {min: medium}` — inclusive bounds on the alert's Sigma level."""

    min: Level | None = None
    max: Level | None = None

    @model_validator(mode="after")
    def _bounds(self) -> LevelRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (e.g. {min: medium})")
        if self.min and self.max and level_rank(self.min) > level_rank(self.max):
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class CriticalityRange(_Model):
    """`criticality: {min: 3}` — inclusive bounds on the asset criticality (1..4, 4 most critical)."""

    min: int | None = Field(default=None, ge=1, le=4)
    max: int | None = Field(default=None, ge=1, le=4)

    @model_validator(mode="after")
    def _bounds(self) -> CriticalityRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both (e.g. {min: 3})")
        if self.min and self.max and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class LogSource(_Model):
    """The Sigma log source of the alert's rule; every given key must match (case-insensitive)."""

    product: str | None = None
    service: str | None = None
    category: str | None = None

    @model_validator(mode="after")
    def _some(self) -> LogSource:
        if not (self.product or self.service or self.category):
            raise ValueError("give at least one of product, service, category")
        return self


class AssetFilter(_Model):
    """Conditions on one matched asset; every given key must hold for the same asset."""

    sector: list[Sector] | None = Field(default=None, min_length=1)
    criticality: CriticalityRange | None = None
    department: list[str] | None = Field(default=None, min_length=1)
    sensitivity: list[Sensitivity] | None = Field(default=None, min_length=1)
    tags: list[str] | None = Field(default=None, min_length=1)  # the asset has at least one of them


class AnyCondition(_Model):
    any: list[Condition] = Field(min_length=1)


class AllCondition(_Model):
    all: list[Condition] = Field(min_length=1)


class NotCondition(_Model):
    not_: Condition = Field(alias="not")


class RuleIdsCondition(_Model):
    rule_ids: list[str] = Field(min_length=1)


class TagsCondition(_Model):
    tags: list[str] = Field(min_length=1)


class LevelCondition(_Model):
    level: LevelRange


class LogSourceCondition(_Model):
    log_source: LogSource


class AssetCondition(_Model):
    asset: AssetFilter


class SourceIpCondition(_Model):
    """The alert's `source.ip` (or a correlation's `source.ip` group value) is inside one of the
    networks (CIDRs or single addresses), e.g. the city's internal ranges."""

    source_ip: list[str] = Field(min_length=1)

    @field_validator("source_ip")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not an IP address or CIDR range (e.g. 10.0.0.0/8)") from None
        return v


class AlwaysCondition(_Model):
    always: Literal[True]


#: condition key → model; the key of a one-key mapping names the condition kind
CONDITION_KINDS: dict[str, type[_Model]] = {
    "any": AnyCondition,
    "all": AllCondition,
    "not": NotCondition,
    "rule_ids": RuleIdsCondition,
    "tags": TagsCondition,
    "level": LevelCondition,
    "log_source": LogSourceCondition,
    "asset": AssetCondition,
    "source_ip": SourceIpCondition,
    "always": AlwaysCondition,
}
_CONDITION_TAGS = {model: key for key, model in CONDITION_KINDS.items()}


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return _CONDITION_TAGS.get(type(value))  # type: ignore[arg-type]
    if isinstance(value, Mapping) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    return None


Condition = Annotated[
    Annotated[AnyCondition, Tag("any")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[RuleIdsCondition, Tag("rule_ids")]
    | Annotated[TagsCondition, Tag("tags")]
    | Annotated[LevelCondition, Tag("level")]
    | Annotated[LogSourceCondition, Tag("log_source")]
    | Annotated[AssetCondition, Tag("asset")]
    | Annotated[SourceIpCondition, Tag("source_ip")]
    | Annotated[AlwaysCondition, Tag("always")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition is a mapping with exactly one key",
    ),
]

AnyCondition.model_rebuild()
AllCondition.model_rebuild()
NotCondition.model_rebuild()


# --- steps ---------------------------------------------------------------------------------------


class _Step(_Model):
    id: str = Field(default="", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    when: Condition | None = None  # the step runs only when the alert matches this condition


class EnrichStep(_Step):
    """Asset and owner from the inventory, reverse DNS of the addresses, earlier incidents."""

    kind: Literal["enrich"] = "enrich"
    inventory: bool = True
    reverse_dns: bool = False
    history_days: int = Field(default=30, ge=0, le=3650)  # 0: do not look up earlier incidents


# ChainableUndefined: `{{ host.name }}` on an alert without `host` renders empty instead of failing
_TEMPLATES = SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False)


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    # compiled once per distinct key (kept out of the model so that models compare by their fields)
    return _TEMPLATES.from_string(source)


class GroupStep(_Step):
    """Alerts whose rendered `key` is the same join one open incident while its window lasts."""

    kind: Literal["group"] = "group"
    key: str = Field(min_length=1)
    window: Duration = timedelta(hours=1)

    @field_validator("key")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            _TEMPLATES.from_string(v)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"template does not compile: {e.message} (template line {e.lineno})") from None
        return v

    def render_key(self, context: Mapping[str, Any]) -> str:
        """The group key for one alert (`template_context`); missing values render as empty."""
        return _compiled(self.key).render(context).strip()


def template_context(
    alert_document: Mapping[str, Any],
    asset: Mapping[str, Any] | None = None,
    *,
    department: Mapping[str, Any] | None = None,
    alert_id: str | None = None,
) -> dict[str, Any]:
    """What a `group.key` template sees: the alert document's fields at the top (`rule.id`,
    `host.name`, `source.ip`, ...), the whole document as `alert`, its `id`, the first matched asset
    as `asset` and its department as `department` (empty when no asset matched)."""
    ctx: dict[str, Any] = {**alert_document, "alert": dict(alert_document)}
    if alert_id is not None:
        ctx["id"] = alert_id
    ctx["asset"] = dict(asset or {})
    ctx["department"] = dict(department or {})
    return ctx


class SlaTimes(_Model):
    acknowledge: Duration | None = None
    resolve: Duration | None = None


class SlaSpec(_Model):
    """Either one pair of deadlines, or one pair per priority (`by_priority`)."""

    acknowledge: Duration | None = None
    resolve: Duration | None = None
    by_priority: dict[Priority, SlaTimes] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SlaSpec:
        flat = self.acknowledge is not None or self.resolve is not None
        if flat and self.by_priority is not None:
            raise ValueError("give acknowledge/resolve or by_priority, not both")
        if not flat and not self.by_priority:
            raise ValueError(
                "give acknowledge and/or resolve (e.g. {acknowledge: 30m, resolve: 1d}) or by_priority"
            )
        return self

    def for_priority(self, priority: str | None) -> SlaTimes | None:
        """The deadlines for an incident of `priority` (None: this priority has none)."""
        if self.by_priority is None:
            return SlaTimes(acknowledge=self.acknowledge, resolve=self.resolve)
        return self.by_priority.get(priority) if priority else None  # type: ignore[call-overload]


class SetStep(_Step):
    """Priority (literal or level × criticality matrix), SLA, assignee, queue and tags."""

    kind: Literal["set"] = "set"
    priority: Literal["matrix", "P1", "P2", "P3", "P4"] | None = None
    matrix: dict[Level, Annotated[list[Priority], Field(min_length=4, max_length=4)]] | None = None
    default_criticality: int = Field(default=2, ge=1, le=4)  # used when the alert matched no asset
    sla: SlaSpec | None = None
    assignee: str | None = None  # omitted or null: left as it is
    queue: str | None = None
    tags: list[str] = Field(default_factory=list)  # added to the incident's tags

    @model_validator(mode="after")
    def _matrix_needs_priority(self) -> SetStep:
        if self.matrix is not None and self.priority != "matrix":
            raise ValueError("matrix is only used with priority: matrix")
        return self

    def priority_for(self, level: str | None, criticality: int | None) -> str | None:
        """The priority this step sets for an alert of `level` on assets of max `criticality`.

        `matrix` entries override the default matrix level by level; an alert without a level counts
        as `low`; no matched asset counts as `default_criticality`."""
        if self.priority is None or self.priority != "matrix":
            return self.priority
        row_level = level if level in DEFAULT_MATRIX else "low"
        rows: dict[str, Sequence[str]] = dict(DEFAULT_MATRIX)
        for lvl, row in (self.matrix or {}).items():
            rows[lvl] = row
        crit = min(max(criticality or self.default_criticality, 1), 4)
        return str(rows[row_level][crit - 1])


class NoticeActions(_Model):
    """Recommended actions shown in the notice, per language."""

    vi: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> NoticeActions:
        if not self.vi and not self.en:
            raise ValueError("give the actions in vi and/or en")
        return self

    def for_language(self, language: str) -> list[str]:
        """The actions in `language`, else the other language's (better than none)."""
        primary = self.vi if language == "vi" else self.en
        return list(primary or self.en or self.vi)


def _check_recipients(to: list[str], channel: str) -> list[str]:
    for r in to:
        if r in SYMBOLIC_RECIPIENTS:
            continue
        if channel == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", r):
            raise ValueError(
                f"{r!r} is neither a recipient group ({', '.join(SYMBOLIC_RECIPIENTS)}) nor an email address"
            )
        if channel == "webhook" and not re.match(r"^https?://\S+$", r):
            raise ValueError(
                f"{r!r} is neither a recipient group ({', '.join(SYMBOLIC_RECIPIENTS)}) nor an http(s) URL"
            )
    return to


class NotifyStep(_Step):
    """Queue a notice per recipient (delivered by the outbox, retried, never lost)."""

    kind: Literal["notify"] = "notify"
    channel: Literal["email", "webhook"] = "email"
    to: list[str] = Field(min_length=1)
    template: NoticeTemplate = "incident_opened"
    language: Language | None = None  # default: settings.notify.language
    actions: NoticeActions | None = None

    @model_validator(mode="after")
    def _recipients(self) -> NotifyStep:
        _check_recipients(self.to, self.channel)
        return self


class WebhookStep(_Step):
    """POST the incident as signed JSON to an external system (firewall, ticketing)."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://\S+$")
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: Duration | None = None  # default: settings.webhook.timeout


class EscalateStep(_Step):
    """Scheduled: while the incident is not acknowledged, notify the next level after `after`."""

    kind: Literal["escalate"] = "escalate"
    after: Literal["acknowledge_sla"] | Duration = "acknowledge_sla"
    channel: Literal["email", "webhook"] = "email"
    to: list[str] = Field(default_factory=lambda: ["escalation"], min_length=1)
    template: NoticeTemplate = "escalation"
    language: Language | None = None
    repeat: Duration | None = None  # time between levels; None: max_levels is 1
    max_levels: int = Field(default=1, ge=1, le=10)
    actions: NoticeActions | None = None

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, v: Any) -> Any:
        return v if v == "acknowledge_sla" else parse_duration(v)

    @model_validator(mode="after")
    def _recipients(self) -> EscalateStep:
        _check_recipients(self.to, self.channel)
        if self.max_levels > 1 and self.repeat is None:
            raise ValueError("max_levels above 1 needs repeat (the time between two levels, e.g. 1h)")
        return self


class CloseStep(_Step):
    """Scheduled: resolve the incident when no new alert joined it for `when_quiet`."""

    kind: Literal["close"] = "close"
    when_quiet: Duration
    max_level: Level | None = None  # only incidents whose level is at most this; None: any level
    status: Literal["resolved", "false_positive"] = "resolved"


Step = Annotated[
    EnrichStep | GroupStep | SetStep | NotifyStep | WebhookStep | EscalateStep | CloseStep,
    Field(discriminator="kind"),
]
STEP_KINDS: dict[str, type[_Step]] = {
    "enrich": EnrichStep,
    "group": GroupStep,
    "set": SetStep,
    "notify": NotifyStep,
    "webhook": WebhookStep,
    "escalate": EscalateStep,
    "close": CloseStep,
}
#: a playbook may have at most one step of these kinds
_SINGLE_KINDS = ("group", "close")


#: keys `_step_input` adds for shapes it cannot turn into a step; the loader explains them
BODY_NOT_MAPPING = "__body_not_mapping__"
GIVEN_TWICE = "__given_twice__"


def _step_input(item: Any, n: int) -> Any:
    """`{notify: {...}}` (plus optional sibling `id`/`when`) or a bare `enrich` → `{kind: ..., ...}`,
    with the default id `<kind>-<n>`. Shapes it cannot read are passed on for the union to reject
    (never raised here: one bad step must not hide the problems of the others)."""
    if isinstance(item, str):
        return {"kind": item, "id": f"{item}-{n}"}
    if not isinstance(item, Mapping) or "kind" in item:
        return item
    kinds = [k for k in item if k not in ("id", "when")]
    if len(kinds) != 1:
        return dict(item)  # no kind, or several: the union reports it
    kind = kinds[0]
    body = item[kind]
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        return {"kind": kind, BODY_NOT_MAPPING: body}
    merged: dict[str, Any] = {"kind": kind, **body}
    for extra in ("id", "when"):
        if extra in item:
            if extra in body:
                merged[GIVEN_TWICE] = extra
            merged[extra] = item[extra]
    merged.setdefault("id", f"{kind}-{n}")
    return merged


class Playbook(_Model):
    """One playbook file. `source`/`line` are set by the loader (where it came from)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    title: str = Field(min_length=1)
    title_en: str | None = None
    description: str | None = None
    enabled: bool = True
    order: int = Field(default=100, ge=0)
    trigger: Condition
    steps: list[Step] = Field(min_length=1)
    source: str = ""
    line: int | None = None

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_input(cls, v: Any) -> Any:
        return [_step_input(item, n) for n, item in enumerate(v, start=1)] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _step_ids(self) -> Playbook:
        seen: dict[str, int] = {}
        for n, step in enumerate(self.steps, start=1):
            if not step.id:
                # frozen model: the default id is filled in once, here, at load time
                object.__setattr__(step, "id", f"{step.kind}-{n}")
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used by steps {seen[step.id]} and {n}")
            seen[step.id] = n
        for kind in _SINGLE_KINDS:
            count = sum(1 for s in self.steps if s.kind == kind)
            if count > 1:
                raise ValueError(f"a playbook has at most one {kind} step, this one has {count}")
        return self

    def steps_of(self, kind: str) -> list[Any]:
        """The steps of one kind, in order (e.g. the runner's scheduled `escalate`/`close`)."""
        return [s for s in self.steps if s.kind == kind]


def playbook_json_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook *file*: steps as written (`- notify: {...}` or a bare kind name),
    without the keys the loader sets. (`Playbook.model_json_schema()` describes the loaded model.)"""
    schema = Playbook.model_json_schema(by_alias=True)
    schema["title"] = "hcm-soc playbook"
    props = schema["properties"]
    for key in ("source", "line"):
        props.pop(key, None)
    defs = schema["$defs"]
    variants: list[dict[str, Any]] = []
    for kind, model in STEP_KINDS.items():
        body = defs[model.__name__]
        body["properties"].pop("kind", None)
        if "required" in body:
            body["required"] = [r for r in body["required"] if r != "kind"]
        step_ref = {"$ref": f"#/$defs/{model.__name__}"}
        variants.append(
            {
                "type": "object",
                "properties": {
                    kind: {"anyOf": [step_ref, {"type": "null"}]},
                    "id": body["properties"]["id"],
                    "when": body["properties"]["when"],
                },
                "required": [kind],
                "additionalProperties": False,
            }
        )
    variants.append({"type": "string", "enum": list(STEP_KINDS)})
    props["steps"] = {"type": "array", "minItems": 1, "items": {"oneOf": variants}, "title": "Steps"}
    return schema
