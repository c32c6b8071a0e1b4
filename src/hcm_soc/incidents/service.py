"""IncidentService: the only writer of incident state — open, link alerts, change, search.

Every change is a read-modify-write of the whole document guarded by if_seq_no/if_primary_term.
Internal writers (the playbook runner, the scheduler) pass no `expected_seq_no`: a lost race is
re-read and the change re-applied to the fresh document (bounded attempts), so no change is
lost. A person's edit based on what they saw passes the `seq_no` they loaded: if the incident
moved on since, they get `IncidentConflict` and decide again. Every change appends one
`TimelineEntry` with the before/after of the summary fields it changed.

Ids are `<prefix>-<UTC year of creation>-<6-digit counter of that year>`. The id is allocated
once per first alert, so re-running the runner on the same alert (also after a crash between
allocating and creating) gives the same incident and creates nothing. A crash after the counter
moved but before the allocation was recorded leaves a gap in the numbers, never a duplicate.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hcm_soc.errors import HcmSocError
from hcm_soc.incidents.lifecycle import CLOSED, OPEN, apply_status, check_status
from hcm_soc.models.alert import Alert
from hcm_soc.models.incident import (
    LEVEL_ORDER,
    MAX_ALERT_REFS,
    AffectedAsset,
    Comment,
    Entities,
    Incident,
    IncidentAlertRef,
    IncidentConflict,
    IncidentDraft,
    IncidentNotFound,
    IncidentPage,
    Sla,
    TimelineEntry,
)
from hcm_soc.store.incidents import IncidentStore, Refresh, SortKey, StaleIncident, backoff
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: a change returns the changed incident, or None when there is nothing to change
Change = Callable[[Incident], Incident | None]

#: the fields whose before/after a timeline entry records (lists like comments/alerts are not copied)
TRACKED = (
    "title",
    "description",
    "status",
    "priority",
    "level",
    "acknowledged_at",
    "resolved_at",
    "assignee",
    "queue",
    "sla",
    "group_until",
    "playbook",
    "tags",
    "escalation_level",
    "alert_count",
)


class InvalidIncidentChange(HcmSocError):
    """A change with a value that cannot be applied (an empty comment, an unknown priority)."""

    exit_code = 2


def utcnow() -> datetime:
    return datetime.now(UTC)


def alert_entities(alert: Alert) -> Entities:
    """The IPs, users, hosts and URLs an alert names, correlation group values included."""
    ips = [a.ip for a in (alert.source, alert.destination) if a is not None and a.ip]
    users = [alert.user.name] if alert.user and alert.user.name else []
    hosts = [alert.host.name] if alert.host and alert.host.name else []
    urls = [u for u in ((alert.url.full or alert.url.original) if alert.url else None,) if u]
    for key, value in (alert.hcm.group or {}).items():
        if not isinstance(value, str) or not value:
            continue
        if key.endswith(".ip"):
            ips.append(value)
        elif key.startswith("user."):
            users.append(value)
        elif key.startswith("host."):
            hosts.append(value)
    return Entities().merged(Entities(ips=ips, users=users, hosts=hosts, urls=urls))


def alert_ref(alert: Alert) -> IncidentAlertRef:
    return IncidentAlertRef(
        id=alert.id,
        rule_id=alert.rule.id,
        rule_title=alert.rule.name,
        level=alert.hcm.rule.level,
        timestamp=alert.timestamp,
    )


def higher_level(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if LEVEL_ORDER.get(a, -1) >= LEVEL_ORDER.get(b, -1) else b


def merge_assets(current: Sequence[AffectedAsset], new: Sequence[AffectedAsset]) -> list[AffectedAsset]:
    """Assets by id: a new record of a known asset replaces it (fresher owners), order kept."""
    out = {a.id: a for a in current}
    for a in new:
        out[a.id] = a
    return list(out.values())


def with_alert(
    incident: Incident,
    alert: Alert,
    *,
    group_until: datetime | None = None,
    assets: Sequence[AffectedAsset] = (),
) -> Incident:
    """`incident` with `alert` added: refs (capped), ids, count, rules, entities, level, last alert.

    The group window stays as the first alert set it unless the caller passes a later one."""
    ids = [*incident.alert_ids, alert.id]
    refs = incident.alerts if len(incident.alerts) >= MAX_ALERT_REFS else [*incident.alerts, alert_ref(alert)]
    last = incident.last_alert_at
    until = incident.group_until
    if group_until is not None and (until is None or group_until > until):
        until = group_until
    return incident.model_copy(
        update={
            "alert_ids": ids,
            "alert_count": len(ids),
            "alerts": refs,
            "rule_ids": list(dict.fromkeys([*incident.rule_ids, alert.rule.id])),
            "entities": incident.entities.merged(alert_entities(alert)),
            "level": higher_level(incident.level, alert.hcm.rule.level),
            "last_alert_at": alert.timestamp if last is None or alert.timestamp > last else last,
            "group_until": until,
            "assets": merge_assets(incident.assets, assets),
        }
    )


def summary_diff(before: Incident, after: Incident) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    b = before.model_dump(mode="json", include=set(TRACKED))
    a = after.model_dump(mode="json", include=set(TRACKED))
    changed = [k for k in TRACKED if b.get(k) != a.get(k)]
    if not changed:
        return None, None
    return {k: b.get(k) for k in changed}, {k: a.get(k) for k in changed}


class IncidentService:
    def __init__(
        self,
        client: Elasticsearch,
        names: IndexNames,
        *,
        id_prefix: str = "INC",
        clock: Callable[[], datetime] = utcnow,
        refresh: Refresh = "false",
        max_attempts: int = 50,
    ) -> None:
        self.store = IncidentStore(client, names, refresh=refresh)
        self.names = names
        self.id_prefix = id_prefix
        self.clock = clock
        self.max_attempts = max_attempts

    def format_id(self, year: int, number: int) -> str:
        return f"{self.id_prefix}-{year}-{number:06d}"

    # -- reading -------------------------------------------------------------------------------------
    def get(self, incident_id: str) -> Incident:
        return self.store.get(incident_id)

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        priority: str | Sequence[str] | None = None,
        assignee: str | None = None,
        department: str | Sequence[str] | None = None,
        sector: str | None = None,
        rule_id: str | None = None,
        query: str | None = None,
        sort: SortKey = "priority",
        page: int = 1,
        size: int = 50,
    ) -> IncidentPage:
        q = self.store.build_query(
            status=status,
            priority=priority,
            assignee=assignee,
            department=department,
            sector=sector,
            rule_id=rule_id,
            query=query,
        )
        return self.store.search(q, sort=sort, page=page, size=size)

    def find_open_for_group(self, group_key: str, at: datetime) -> Incident | None:
        """The newest open incident of `group_key` whose window still covers `at`."""
        q = self.store.build_query(status=list(OPEN))
        q["bool"]["filter"] += [
            {"term": {"group_key": group_key}},
            {"range": {"group_until": {"gte": at.isoformat()}}},
        ]
        for candidate in self.store.search(q, sort="created", size=10).items:
            # search lags writes by up to a refresh; the realtime get has the latest status
            current = self.store.find(candidate.id)
            if current is not None and current.is_open and current.group_until and current.group_until >= at:
                return current
        return None

    def history_for_assets(
        self, asset_ids: Sequence[str], *, since: datetime, exclude: str | None = None, limit: int = 20
    ) -> builtins.list[str]:
        """Ids of incidents (any status) on any of these assets created since `since`, newest first."""
        if not asset_ids:
            return []
        q = self.store.build_query()
        q["bool"]["filter"] += [
            {"terms": {"assets.id": list(asset_ids)}},
            {"range": {"created": {"gte": since.isoformat()}}},
        ]
        if exclude:
            q["bool"]["must_not"] = [{"term": {"id": exclude}}]
        return [i.id for i in self.store.search(q, sort="created", size=limit).items]

    def due_for_escalation(self, now: datetime) -> builtins.list[Incident]:
        """Incidents still `new` whose acknowledgement deadline has passed."""
        q = self.store.build_query(status="new")
        q["bool"]["filter"].append({"range": {"sla.acknowledge_by": {"lt": now.isoformat()}}})
        return self.store.scan(q)

    def open_incidents(self) -> builtins.list[Incident]:
        return self.store.scan(self.store.build_query(status=list(OPEN)))

    # -- opening and linking ------------------------------------------------------------------------
    def open_for_alert(self, draft: IncidentDraft, alert: Alert, *, actor: str) -> tuple[Incident, bool]:
        """Open an incident for a first alert; (incident, True) when this call created it.

        Idempotent: the same alert always gives the same incident id, and a second call (or a
        call after a crash anywhere in between) creates nothing and returns (incident, False).
        An alert already linked elsewhere returns that incident."""
        owner = self.store.alert_owner(alert.id)
        incident_id = self.store.allocation(alert.id)
        if owner is not None and owner != incident_id:
            return self._linked_incident(owner, alert.id), False
        if incident_id is None:
            now = self.clock()
            number = self.store.next_number(now.year, now=now)
            incident_id = self.store.allocate(alert.id, self.format_id(now.year, number), now=now)
        owner, _ = self.store.claim_alert(alert.id, incident_id)
        if owner != incident_id:
            return self._linked_incident(owner, alert.id), False
        existing = self.store.find(incident_id)
        if existing is None:
            if self.store.create(self._new_incident(incident_id, draft, alert, actor=actor)):
                return self.store.get(incident_id), True
            existing = self.store.get(incident_id)
        if alert.id in existing.alert_ids:
            return existing, False
        # created by a run that stopped before this alert was added: finish its work
        repaired, _ = self._link_in_document(incident_id, alert, actor=actor)
        return repaired, False

    def _linked_incident(self, incident_id: str, alert_id: str) -> Incident:
        found = self.store.find(incident_id)
        if found is None:
            raise IncidentNotFound(
                f"alert {alert_id} is linked to {incident_id}, which is not stored yet (another runner is "
                "opening it); retry"
            )
        return found

    def _new_incident(self, incident_id: str, draft: IncidentDraft, alert: Alert, *, actor: str) -> Incident:
        now = self.clock()
        base = Incident(
            id=incident_id,
            title=draft.title,
            description=draft.description,
            priority=draft.priority,
            level=draft.level,
            created=now,
            updated=now,
            assignee=draft.assignee,
            queue=draft.queue,
            sla=draft.sla,
            group_key=draft.group_key,
            group_until=draft.group_until,
            playbook=draft.playbook,
            assets=list(draft.assets),
            entities=draft.entities,
            tags=list(dict.fromkeys(draft.tags)),
        )
        incident = with_alert(base, alert)
        created = TimelineEntry(
            at=now,
            actor=actor,
            action="created",
            message=f"opened for alert {alert.id} ({alert.rule.name})",
            after={k: v for k, v in incident.model_dump(mode="json", include=set(TRACKED)).items() if v},
        )
        linked = TimelineEntry(
            at=now,
            actor=actor,
            action="alert_linked",
            message=self._alert_message(alert),
            after={"alert": alert.id},
        )
        return incident.model_copy(update={"timeline": [created, linked]})

    @staticmethod
    def _alert_message(alert: Alert) -> str:
        return f"alert {alert.id}: {alert.rule.name} ({alert.hcm.rule.level or 'no level'})"

    def link_alert(
        self,
        incident_id: str,
        alert: Alert,
        *,
        actor: str,
        group_until: datetime | None = None,
        assets: Sequence[AffectedAsset] = (),
    ) -> tuple[Incident, bool]:
        """Add `alert` to the incident; (incident, False) when the alert is already linked (to this or
        another incident) and nothing changed. The alert is claimed first (its `hcm.incident`), so
        that it can never join two incidents; a crash after the claim is finished by a re-run."""
        self.store.get(incident_id)
        owner, _ = self.store.claim_alert(alert.id, incident_id)
        if owner != incident_id:
            return self.store.get(incident_id), False
        return self._link_in_document(incident_id, alert, actor=actor, group_until=group_until, assets=assets)

    def _link_in_document(
        self,
        incident_id: str,
        alert: Alert,
        *,
        actor: str,
        group_until: datetime | None = None,
        assets: Sequence[AffectedAsset] = (),
    ) -> tuple[Incident, bool]:
        def change(inc: Incident) -> Incident | None:
            if alert.id in inc.alert_ids:
                return None
            return with_alert(inc, alert, group_until=group_until, assets=assets)

        return self._mutate(
            incident_id, change, actor=actor, action="alert_linked", message=self._alert_message(alert)
        )

    # -- changing --------------------------------------------------------------------------------------
    def update(
        self,
        incident_id: str,
        change: Change,
        *,
        actor: str,
        action: str,
        message: str | None = None,
        expected_seq_no: int | None = None,
        step: str | None = None,
    ) -> Incident:
        """Apply `change` to the stored incident and write it conditionally; one timeline entry.

        `change` gets a copy and returns the changed incident (None: nothing to do, nothing
        written). It may be called more than once when internal writers race."""
        return self._mutate(
            incident_id,
            change,
            actor=actor,
            action=action,
            message=message,
            expected_seq_no=expected_seq_no,
            step=step,
        )[0]

    def _mutate(
        self,
        incident_id: str,
        change: Change,
        *,
        actor: str,
        action: str,
        message: str | None = None,
        expected_seq_no: int | None = None,
        step: str | None = None,
        entry: TimelineEntry | None = None,
    ) -> tuple[Incident, bool]:
        attempts = 1 if expected_seq_no is not None else self.max_attempts
        for attempt in range(attempts):
            current = self.store.get(incident_id)
            assert current.seq_no is not None and current.primary_term is not None
            if expected_seq_no is not None and current.seq_no != expected_seq_no:
                raise self._conflict(incident_id, expected_seq_no, current.seq_no)
            changed = change(current.model_copy(deep=True))
            if changed is None:
                return current, False
            if changed.id != incident_id:
                raise InvalidIncidentChange(f"{incident_id}: a change may not alter the incident id")
            now = self.clock()
            if entry is None:
                before, after = summary_diff(current, changed)
                new_entry = TimelineEntry(
                    at=now, actor=actor, action=action, message=message, before=before, after=after, step=step
                )
            else:
                new_entry = entry
            changed = changed.model_copy(update={"updated": now, "timeline": [*changed.timeline, new_entry]})
            try:
                written = self.store.replace(
                    changed, seq_no=current.seq_no, primary_term=current.primary_term
                )
            except StaleIncident:
                if expected_seq_no is not None:
                    latest = self.store.get(incident_id).seq_no
                    raise self._conflict(incident_id, expected_seq_no, latest) from None
                backoff(attempt)
                continue
            return written, True
        raise IncidentConflict(
            f"{incident_id}: still being changed by others after {attempts} attempts; retry"
        )

    @staticmethod
    def _conflict(incident_id: str, expected: int, now: int | None) -> IncidentConflict:
        return IncidentConflict(
            f"{incident_id}: changed by someone else since you loaded it (seq {expected} → {now}); "
            "reload and retry"
        )

    def acknowledge(self, incident_id: str, *, actor: str, expected_seq_no: int | None = None) -> Incident:
        """`new` → `acknowledged`. Acknowledging an incident that has moved on already is a no-op (a
        second click on an acknowledgement link must not fail)."""

        def change(inc: Incident) -> Incident | None:
            if inc.status != "new":
                return None
            return apply_status(inc, "acknowledged", now=self.clock())

        return self.update(
            incident_id,
            change,
            actor=actor,
            action="status",
            message="acknowledged",
            expected_seq_no=expected_seq_no,
        )

    def assign(
        self, incident_id: str, assignee: str | None, *, actor: str, expected_seq_no: int | None = None
    ) -> Incident:
        value = (assignee or "").strip() or None

        def change(inc: Incident) -> Incident | None:
            return None if inc.assignee == value else inc.model_copy(update={"assignee": value})

        return self.update(
            incident_id,
            change,
            actor=actor,
            action="assigned",
            message=f"assigned to {value}" if value else "unassigned",
            expected_seq_no=expected_seq_no,
        )

    def comment(
        self, incident_id: str, text: str, *, actor: str, expected_seq_no: int | None = None
    ) -> Incident:
        body = text.strip()
        if not body:
            raise InvalidIncidentChange(f"{incident_id}: a comment needs some text")

        def change(inc: Incident) -> Incident:
            note = Comment(at=self.clock(), author=actor, text=body)
            return inc.model_copy(update={"comments": [*inc.comments, note]})

        return self.update(
            incident_id, change, actor=actor, action="comment", message=body, expected_seq_no=expected_seq_no
        )

    def set_status(
        self,
        incident_id: str,
        status: str,
        *,
        actor: str,
        reason: str | None = None,
        expected_seq_no: int | None = None,
    ) -> Incident:
        """Move to `status` if the lifecycle allows it (TransitionError lists what is allowed);
        `reason`, when given, is also kept as a comment."""
        target = check_status(status)
        note = (reason or "").strip() or None

        def change(inc: Incident) -> Incident:
            moved = apply_status(inc, target, now=self.clock())
            if note is None:
                return moved
            return moved.model_copy(
                update={"comments": [*moved.comments, Comment(at=self.clock(), author=actor, text=note)]}
            )

        action = "closed" if target in CLOSED else "status"
        return self.update(
            incident_id, change, actor=actor, action=action, message=note, expected_seq_no=expected_seq_no
        )

    def close(
        self,
        incident_id: str,
        *,
        actor: str,
        reason: str,
        false_positive: bool = False,
        expected_seq_no: int | None = None,
    ) -> Incident:
        """Resolve (or mark false positive) with the reason kept as a comment."""
        if not reason.strip():
            raise InvalidIncidentChange(f"{incident_id}: closing needs a reason (it is kept as a comment)")
        return self.set_status(
            incident_id,
            "false_positive" if false_positive else "resolved",
            actor=actor,
            reason=reason,
            expected_seq_no=expected_seq_no,
        )

    def set_fields(
        self,
        incident_id: str,
        *,
        actor: str,
        priority: str | None = None,  # P1..P4, checked here (playbook values are plain strings)
        sla: Sla | None = None,
        assignee: str | None = None,
        queue: str | None = None,
        tags: Sequence[str] | None = None,
        step: str | None = None,
        escalation_level: int | None = None,
    ) -> Incident:
        """The playbook `set` step: fields given replace the stored ones, tags are added. Setting
        the same values again writes nothing (a re-run changes nothing)."""
        if priority is not None and priority not in ("P1", "P2", "P3", "P4"):
            raise InvalidIncidentChange(f"{incident_id}: priority {priority!r}; expected P1, P2, P3 or P4")
        update: dict[str, Any] = {}
        for key, value in (
            ("priority", priority),
            ("sla", sla),
            ("assignee", assignee),
            ("queue", queue),
            ("escalation_level", escalation_level),
        ):
            if value is not None:
                update[key] = value

        def change(inc: Incident) -> Incident | None:
            fields = dict(update)
            if tags is not None:
                fields["tags"] = list(dict.fromkeys([*inc.tags, *tags]))
            candidate = inc.model_copy(update=fields)
            return None if summary_diff(inc, candidate) == (None, None) else candidate

        named = [
            k for k in ("priority", "sla", "assignee", "queue", "tags", "escalation_level") if k in update
        ]
        if tags is not None:
            named.append("tags")
        action = named[0] if len(set(named)) == 1 else "set"
        return self.update(incident_id, change, actor=actor, action=action, step=step)

    def add_timeline(self, incident_id: str, entry: TimelineEntry) -> Incident:
        """Append `entry` as given (notice delivery, playbook steps); nothing else changes."""
        return self._mutate(
            incident_id, lambda inc: inc, actor=entry.actor, action=entry.action, entry=entry
        )[0]
