"""A throw-away event store in the real Elasticsearch, for `hcm-soc rules test` and rule content tests.

`ScratchEvents` gives a unique index prefix, loads ECS events through the project's
ingest pipeline (so every event gets `event.ingested` exactly as in production), hands
back the `Window` that covers them and removes everything afterwards.

Why plain indices and not the production data streams: a node without the
data-streams module (the local development node) cannot delete a data stream, so a
scratch data stream would stay behind after every `rules test`. The scratch indices
carry the same ECS mappings (`.caseless` sub-fields included) and the same final
ingest pipeline as the production templates, and their names match
`<prefix>-events-<dataset>-<namespace>`, so compiled rules see them exactly as they
see production data.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hcm_soc.detection.model import Window
from hcm_soc.errors import DependencyUnavailable, HcmSocError
from hcm_soc.store.grams import GRAM_SETTINGS
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, ecs_mappings, install, uninstall

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_.]*$")
#: used for events that name no (valid) `event.dataset`
DEFAULT_DATASET = "rules.test"


class ScratchLoadError(HcmSocError):
    """Elasticsearch refused some of the events given to a scratch store."""


@dataclass(frozen=True, slots=True)
class LoadedEvent:
    """One event as stored: `id` is the Elasticsearch `_id` (`line-<n>` for line n of the input by default)."""

    line: int
    id: str
    index: str
    source: dict[str, Any]


@dataclass
class ScratchEvents:
    """Context manager: `with ScratchEvents(es) as scratch: scratch.load(events) ...`.

    `names` are the scratch store's index names (give them to `RuleCompiler(names)`);
    the prefix is `<base prefix>_scratch_<random>` so it never matches production patterns.
    """

    es: Elasticsearch
    base: IndexNames = field(default_factory=IndexNames)
    names: IndexNames = field(init=False)
    _indices: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        prefix = f"{self.base.prefix}_scratch_{uuid.uuid4().hex[:10]}"
        self.names = IndexNames(prefix=prefix, namespace=self.base.namespace)

    def __enter__(self) -> ScratchEvents:
        from elastic_transport import TransportError

        pipeline = [i for i in build_items(self.names) if i.kind == "pipeline"]
        try:
            install(self.es, pipeline)
        except (TransportError, OSError) as e:
            raise DependencyUnavailable(
                f"Elasticsearch did not answer while preparing a scratch store: {e}"
            ) from e
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Delete the scratch indices and pipeline (best effort: never hides the caller's error)."""
        from elastic_transport import TransportError
        from elasticsearch import ApiError

        for index in sorted(self._indices):
            with contextlib.suppress(ApiError, TransportError):
                self.es.indices.delete(index=index, ignore_unavailable=True)
        self._indices.clear()
        with contextlib.suppress(ApiError, TransportError):
            uninstall(self.es, self.names)

    def _index_for(self, event: Mapping[str, Any]) -> str:
        dataset = (
            (event.get("event") or {}).get("dataset") if isinstance(event.get("event"), Mapping) else None
        )
        if not isinstance(dataset, str) or not _DATASET_RE.match(dataset) or len(dataset) > 100:
            dataset = DEFAULT_DATASET
        index = self.names.events(dataset)
        if index not in self._indices:
            self.es.indices.create(
                index=index,
                settings={
                    "index.number_of_shards": 1,
                    "index.number_of_replicas": 0,
                    "index.final_pipeline": self.names.ingest_pipeline,
                    "index.mapping.total_fields.limit": 5000,
                    **GRAM_SETTINGS,
                },
                mappings=ecs_mappings(),
            )
            self._indices.add(index)
        return index

    def load(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        first_line: int = 1,
        id_prefix: str = "line",
        numbers: Sequence[int] | None = None,
    ) -> list[LoadedEvent]:
        """Store `events` and make them searchable. Event i gets the line number `numbers[i]` (default:
        counted from `first_line`) and the `_id` `<id_prefix>-<line number>`.

        An event without `@timestamp` gets the current time; `event.ingested` is always set
        by the ingest pipeline. Raises ScratchLoadError listing every refused event."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        loaded: list[LoadedEvent] = []
        operations: list[dict[str, Any]] = []
        events = list(events)
        lines = list(numbers) if numbers is not None else list(range(first_line, first_line + len(events)))
        if len(lines) != len(events):
            raise ValueError(f"{len(events)} events but {len(lines)} line numbers")
        for n, event in zip(lines, events, strict=True):
            doc = dict(event)
            doc.setdefault("@timestamp", now)
            ev = doc.get("event")
            if isinstance(ev, Mapping):
                doc["event"] = {k: v for k, v in ev.items() if k != "ingested"}
            index = self._index_for(doc)
            doc_id = f"{id_prefix}-{n}"
            loaded.append(LoadedEvent(n, doc_id, index, doc))
            operations += [{"create": {"_index": index, "_id": doc_id}}, doc]
        if not operations:
            return loaded
        resp = self.es.bulk(operations=operations, refresh="wait_for")
        if resp.get("errors"):
            problems = []
            for item in resp["items"]:
                detail = next(iter(item.values()))
                err = detail.get("error")
                if err is None:
                    continue
                reason = err.get("reason", err) if isinstance(err, Mapping) else err
                problems.append(f"{detail.get('_id')}: {reason}")
            raise ScratchLoadError(
                f"Elasticsearch refused {len(problems)} of {len(loaded)} event(s): "
                + "; ".join(problems[:10])
                + ("; …" if len(problems) > 10 else "")
                + " — check that each line is one JSON object whose fields have their ECS types"
            )
        return loaded

    def load_slice(
        self, events: Iterable[Mapping[str, Any]], *, id_prefix: str = "line"
    ) -> tuple[list[LoadedEvent], Window]:
        """Load `events` and return the Window that holds them and nothing loaded before or after:
        several sample sets share one scratch store without seeing each other."""
        loaded = self.load(events, id_prefix=id_prefix)
        if not loaded:
            now = datetime.now(UTC)
            return loaded, Window(start=now, end=now)
        return loaded, self._ingested_window([e.id for e in loaded])

    def window(self) -> Window:
        """The `event.ingested` range that covers every event loaded so far."""
        return self._ingested_window(None)

    def _ingested_window(self, ids: Sequence[str] | None) -> Window:
        """[first event.ingested, last + 1 ms) of the given events (all when None), read back from
        Elasticsearch: the node's clock sets event.ingested, so a window computed from this
        machine's clock could miss events when the two clocks differ."""
        if not self._indices:
            now = datetime.now(UTC)
            return Window(start=now, end=now)
        resp = self.es.search(
            index=",".join(sorted(self._indices)),
            size=0,
            query={"ids": {"values": list(ids)}} if ids is not None else {"match_all": {}},
            aggs={"lo": {"min": {"field": "event.ingested"}}, "hi": {"max": {"field": "event.ingested"}}},
        )
        lo, hi = resp["aggregations"]["lo"]["value"], resp["aggregations"]["hi"]["value"]
        if lo is None or hi is None:
            now = datetime.now(UTC)
            return Window(start=now, end=now)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return Window(
            start=epoch + timedelta(milliseconds=int(lo)), end=epoch + timedelta(milliseconds=int(hi) + 1)
        )

    @property
    def indices(self) -> Sequence[str]:
        return sorted(self._indices)
