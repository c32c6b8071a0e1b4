"""Rules written in the web console, in `<prefix>-rules`: the Sigma YAML, enabled or not, who and when.

One document per rule id (`_id` = the Sigma rule id). A document with `yaml` is a console
rule; a document without `yaml` is an *override*: it only switches a rule that lives in a
rule file on or off (`set_enabled` on a file rule writes one). The engine reads both (see
detection/loader.py: a console rule replaces a file rule with the same id; an override sets
`enabled`).

Writes are conditional on the `_seq_no`/`_primary_term` read just before (optimistic
concurrency): two administrators saving the same rule at once get `RuleConflict`, never a
silent overwrite. This module does not validate Sigma — `detection.workbench.RuleWorkbench`
does before it calls `put`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml
from elastic_transport import TransportError
from elasticsearch import ApiError, ConflictError, NotFoundError
from pydantic import BaseModel, ConfigDict

from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.names import IndexNames

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: the largest rule text accepted: a Sigma rule is a few kB; this stops a paste of a whole log file
MAX_YAML_BYTES = 256 * 1024
_PAGE = 500


class RuleStoreError(HcmSocError):
    """A console rule could not be read or written, or its text carries no usable id."""


class RuleConflict(RuleStoreError):
    """The rule changed between read and write (someone else saved it at the same time)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def yaml_version(text: str) -> str:
    """The version of a rule text: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StoredRule(BaseModel):
    """A console rule (`yaml` set) or an override of a file rule (`yaml` None)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str | None = None
    yaml: str | None = None
    enabled: bool = False
    author: str | None = None  # who saved the YAML last (or wrote the override)
    updated_by: str | None = None  # who changed the document last (save or enable/disable)
    created: datetime | None = None
    updated: datetime | None = None
    version: str | None = None  # yaml_version(yaml); None for an override
    # set by the workbench when the text had no id and one was generated (never stored)
    id_assigned: bool = False

    @property
    def is_override(self) -> bool:
        return self.yaml is None


def rule_identity(text: str) -> tuple[str | None, str | None]:
    """(id, title) of the first YAML document of `text`, (None, None) when it is not a mapping.

    Raises RuleStoreError for text that is not YAML (the workbench validates before this)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise RuleStoreError(f"the rule text is not valid YAML: {e}") from e
    first = docs[0] if docs else None
    if not isinstance(first, dict):
        return None, None
    rid, title = first.get("id"), first.get("title")
    return (str(rid) if rid else None), (str(title) if title else None)


class RuleStore:
    """Console rules and overrides in `<prefix>-rules`."""

    def __init__(
        self, client: Elasticsearch, names: IndexNames, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.client = client
        self.names = names
        self.clock = clock

    # -- reading ------------------------------------------------------------------------------------
    def _read(self, rule_id: str) -> tuple[StoredRule, int, int] | None:
        try:
            resp = self.client.get(index=self.names.rules, id=rule_id)
        except NotFoundError:
            return None
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not read rule {rule_id} from {self.names.rules}: {e}") from e
        except ApiError as e:
            raise RuleStoreError(f"could not read rule {rule_id} from {self.names.rules}: {e.message}") from e
        return _from_doc(resp["_source"]), resp["_seq_no"], resp["_primary_term"]

    def get(self, rule_id: str) -> StoredRule | None:
        """The console rule or override with this id, None when there is none."""
        found = self._read(rule_id)
        return found[0] if found else None

    def list(self) -> list[StoredRule]:
        """Every console rule and override, sorted by id (an absent index means none)."""
        out: list[StoredRule] = []
        search_after: list[Any] | None = None
        while True:
            try:
                resp = self.client.search(
                    index=self.names.rules,
                    query={"match_all": {}},
                    sort=[{"id": {"order": "asc", "unmapped_type": "keyword"}}],
                    size=_PAGE,
                    search_after=search_after,
                    ignore_unavailable=True,
                )
            except (TransportError, OSError) as e:
                raise DependencyUnavailable(
                    f"could not read console rules from {self.names.rules}: {e}"
                ) from e
            except ApiError as e:
                raise RuleStoreError(
                    f"could not read console rules from {self.names.rules}: {e.message}; "
                    "run `hcm-soc init` if the rules index is missing its template"
                ) from e
            hits = resp["hits"]["hits"]
            out += [_from_doc(h["_source"]) for h in hits]
            if len(hits) < _PAGE:
                return out
            search_after = hits[-1]["sort"]

    # -- writing ------------------------------------------------------------------------------------
    def put(
        self,
        yaml_text: str,
        *,
        author: str,
        enabled: bool | None = False,
        rule_id: str | None = None,
    ) -> StoredRule:
        """Store a console rule; its id and title come from the text (`rule_id` when the caller
        already knows it). `enabled=None` keeps the stored state (False for a new rule).

        An existing document (rule or override) with the same id is replaced; `created` is kept."""
        if len(yaml_text.encode("utf-8")) > MAX_YAML_BYTES:
            raise RuleStoreError(
                f"the rule text is {len(yaml_text.encode('utf-8'))} bytes; at most {MAX_YAML_BYTES} are accepted"
            )
        found_id, title = rule_identity(yaml_text)
        rid = rule_id or found_id
        if not rid:
            raise RuleStoreError("the rule has no id: add `id: <UUID>` at the top of the rule")
        now = self.clock()
        current = self._read(rid)
        old = current[0] if current else None
        rule = StoredRule(
            id=rid,
            title=title,
            yaml=yaml_text,
            enabled=(old.enabled if old else False) if enabled is None else enabled,
            author=author,
            updated_by=author,
            created=old.created if old and old.created else now,
            updated=now,
            version=yaml_version(yaml_text),
        )
        self._write(rule, current)
        return rule

    def set_enabled(
        self, rule_id: str, enabled: bool, *, author: str, title: str | None = None
    ) -> StoredRule:
        """Switch a console rule on or off; for an id with no document (a file rule) write an
        override carrying only the switch (`title` is kept for display)."""
        now = self.clock()
        current = self._read(rule_id)
        if current is None:
            rule = StoredRule(
                id=rule_id,
                title=title,
                enabled=enabled,
                author=author,
                updated_by=author,
                created=now,
                updated=now,
            )
        else:
            rule = current[0].model_copy(update={"enabled": enabled, "updated_by": author, "updated": now})
        self._write(rule, current)
        return rule

    def delete(self, rule_id: str) -> bool:
        """Remove a console rule or override (a file rule then runs as its file says); False if absent."""
        try:
            self.client.delete(index=self.names.rules, id=rule_id, refresh="wait_for")
        except NotFoundError:
            return False
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"could not delete rule {rule_id} from {self.names.rules}: {e}"
            ) from e
        except ApiError as e:
            raise RuleStoreError(f"could not delete rule {rule_id}: {e.message}") from e
        return True

    def _write(self, rule: StoredRule, current: tuple[StoredRule, int, int] | None) -> None:
        kwargs: dict[str, Any] = (
            {"op_type": "create"}
            if current is None
            else {"if_seq_no": current[1], "if_primary_term": current[2]}
        )
        try:
            # wait_for: the catalog and the engine's next reload read what was just written
            self.client.index(
                index=self.names.rules, id=rule.id, document=_to_doc(rule), refresh="wait_for", **kwargs
            )
        except ConflictError as e:
            raise RuleConflict(
                f"rule {rule.id} was changed by someone else while it was being saved; "
                "reload it, check the other change and save again"
            ) from e
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(f"could not write rule {rule.id} to {self.names.rules}: {e}") from e
        except ApiError as e:
            raise RuleStoreError(
                f"could not write rule {rule.id} to {self.names.rules}: {e.message}; "
                "run `hcm-soc init` if the rules mapping is outdated"
            ) from e


def _to_doc(rule: StoredRule) -> dict[str, Any]:
    doc = rule.model_dump(mode="json", exclude={"id_assigned"})
    doc["@timestamp"] = doc["updated"]
    return doc


def _from_doc(source: dict[str, Any]) -> StoredRule:
    return StoredRule.model_validate({k: v for k, v in source.items() if k != "@timestamp"})
