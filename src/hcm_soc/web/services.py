"""WebServices: the service objects the console and the API share, built once by the app factory.

Routes reach them through `request.app.state.services`. The inventory and the playbooks are
files an administrator edits while the console runs: they are re-read when a file changed
(size or mtime), so the console shows what the runner will load without a restart. REST
ingest writes through one bulk writer (created on first use, closed with the app) and the
collectors' `IngestPipeline`, so an event pushed to the API is parsed, wrapped and stored
exactly like one from the HTTP ingest collector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcm_soc.config import Settings
from hcm_soc.incidents.service import IncidentService
from hcm_soc.inventory import Inventory, Problem, departments_file_for, read_inventory
from hcm_soc.playbooks.loader import PlaybookSet, load_playbooks, playbook_files
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from hcm_soc.store.notices import NoticeStore

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.collectors.pipeline import IngestPipeline
    from hcm_soc.detection.workbench import RuleWorkbench
    from hcm_soc.store.audit import AuditLog
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.users import UserStore


def utcnow() -> datetime:
    return datetime.now(UTC)


#: what identifies a version of a set of files: (path, size, mtime in ns) of each
Signature = tuple[tuple[str, int, int], ...]


def _signature(paths: list[Path]) -> Signature:
    out: list[tuple[str, int, int]] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            out.append((str(p), -1, -1))
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


@dataclass
class _Cached:
    signature: Signature | None = None
    value: Any = None


@dataclass
class WebServices:
    settings: Settings
    client: Elasticsearch
    names: IndexNames
    incidents: IncidentService
    alerts: AlertStore
    notices: NoticeStore
    users: UserStore
    audit: AuditLog
    rules: RuleWorkbench
    clock: Callable[[], datetime] = utcnow
    _inventory: _Cached = field(default_factory=_Cached, repr=False)
    _playbooks: _Cached = field(default_factory=_Cached, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _writer: BulkWriter | None = field(default=None, repr=False)
    _pipelines: dict[tuple[str, str], tuple[IngestPipeline, threading.Lock]] = field(
        default_factory=dict, repr=False
    )

    # -- files ------------------------------------------------------------------------------------
    def inventory_state(self) -> tuple[Inventory, list[Problem]]:
        """The inventory and its problems (an empty inventory when the file is missing or invalid)."""
        path = self.settings.paths.inventory
        paths = [path]
        if path.suffix.lower() == ".csv":
            paths.append(departments_file_for(path))
        sig = _signature(paths)
        with self._lock:
            if self._inventory.signature != sig:
                inventory, problems = read_inventory(path)
                self._inventory = _Cached(sig, (inventory or Inventory.empty(str(path)), problems))
            value: tuple[Inventory, list[Problem]] = self._inventory.value
            return value

    def inventory(self) -> Inventory:
        return self.inventory_state()[0]

    def playbooks(self) -> PlaybookSet:
        path = self.settings.paths.playbooks
        files, _ = playbook_files([path])
        sig = _signature([path, *files]) if files else _signature([path])
        with self._lock:
            if self._playbooks.signature != sig:
                self._playbooks = _Cached(sig, load_playbooks([path]))
            value: PlaybookSet = self._playbooks.value
            return value

    # -- REST ingest ------------------------------------------------------------------------------
    def ingest_pipeline(self, source: str, dataset: str) -> tuple[IngestPipeline, threading.Lock]:
        """The pipeline (parse `jsonl`, wrap, bulk write) of one API source and dataset, and the
        lock that keeps one batch at a time on it (pipelines keep plain counters)."""
        from hcm_soc.collectors.definition import HttpInput, SourceDefinition
        from hcm_soc.collectors.pipeline import IngestPipeline
        from hcm_soc.store.bulk import BulkWriter

        key = (source, dataset)
        with self._lock:
            entry = self._pipelines.get(key)
            if entry is None:
                if self._writer is None:
                    self._writer = BulkWriter.from_settings(self.client, self.settings)
                definition = SourceDefinition(
                    name=source,
                    type="http",
                    format="jsonl",
                    dataset=dataset,
                    # the API authenticates users itself; this only satisfies the definition schema
                    http=HttpInput(token_env="HCM_SOC_REST_API"),
                    tags=["rest-api"],
                )
                entry = (
                    IngestPipeline.for_definition(self._writer, self.names, definition),
                    threading.Lock(),
                )
                self._pipelines[key] = entry
            return entry

    def close(self) -> None:
        """Flush and stop the ingest writer (app shutdown)."""
        with self._lock:
            writer, self._writer = self._writer, None
            self._pipelines.clear()
        if writer is not None:
            writer.close()


def build_services(
    settings: Settings, client: Elasticsearch, *, clock: Callable[[], datetime] = utcnow
) -> WebServices:
    from hcm_soc.detection.workbench import RuleWorkbench
    from hcm_soc.store.audit import AuditLog
    from hcm_soc.store.users import UserStore

    names = IndexNames.from_settings(settings)
    return WebServices(
        settings=settings,
        client=client,
        names=names,
        # a person's change is visible in the next list they load
        incidents=IncidentService(
            client, names, id_prefix=settings.response.id_prefix, clock=clock, refresh="wait_for"
        ),
        alerts=AlertStore(client, names),
        notices=NoticeStore(client, names),
        users=UserStore(client, names, clock=clock),
        audit=AuditLog(client, names, clock=clock),
        rules=RuleWorkbench(settings, client, names, clock=clock),
        clock=clock,
    )
