"""Network records into Elasticsearch: the emit target of `NetworkAnalyzer`.

Responsible for the envelope every network record gets (`event.module: network`,
`ecs.version`, the source name and labels under `hcm.*`, `observer.*`, the pcap
file under `log.file.path`), for its deterministic `_id`, and for handing it to
the shared `BulkWriter` (data stream `names.events(dataset)`).

Ids do not depend on the envelope, so re-reading a capture under another path or
source name still writes nothing new. They come from the analyzer's id key:

- flows: `<community id>|<connection start, µs>|<segment>`;
- DNS: `<dataset>|<community id>|<time>|<DNS id>|<question name>|<type>`;
- HTTP, TLS: `<dataset>|<community id>|<connection start>|<n-th record of the connection>`;
- a record without a key gets `<dataset>|<its own content, keys sorted>`: it carries
  its packet time to the microsecond and its endpoints, so the same record read twice
  has the same id and two different ones do not.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from hcm_soc.parsers.base import ECS_VERSION
from hcm_soc.store.bulk import make_id

if TYPE_CHECKING:
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames

__all__ = ["DATASETS", "NetworkRecordWriter", "record_id"]

DATASETS = ("network.flow", "network.dns", "network.http", "network.tls")


def record_id(dataset: str, event: Mapping[str, Any], id_key: str | None) -> str:
    """The `_id` of one analyzer record (computed before the envelope is added)."""
    if id_key:
        return make_id(f"{dataset}|{id_key}")
    return make_id(dataset.encode() + b"|" + orjson.dumps(event, option=orjson.OPT_SORT_KEYS))


class NetworkRecordWriter:
    """Callable `(dataset, event, id_key)`: pass it as the analyzer's `emit`.

    Not thread-safe on its own: one capture (one analyzer) per instance; the
    `BulkWriter` behind it may be shared.
    """

    def __init__(
        self,
        writer: BulkWriter,
        names: IndexNames,
        *,
        source: str,
        labels: Mapping[str, str] | None = None,
        tags: Sequence[str] = (),
        observer: Mapping[str, Any] | None = None,
        interface: str | None = None,
    ) -> None:
        self.writer = writer
        self.source = source
        self.labels = dict(labels or {})
        self.tags = list(dict.fromkeys(tags))
        obs: dict[str, Any] = {"hostname": socket.gethostname(), "type": "sensor", "product": "hcm-soc"}
        obs.update(observer or {})
        if interface:
            obs.setdefault("ingress", {}).setdefault("interface", {})["name"] = interface
        self.observer = obs
        self.file_path: str | None = None  # set per pcap file by the caller
        self.records: Counter[str] = Counter()
        # one lookup per dataset instead of a name check per record
        self._indices = {ds: names.events(ds) for ds in DATASETS}
        self._names = names

    def __call__(self, dataset: str, event: dict[str, Any], id_key: str | None) -> None:
        doc_id = record_id(dataset, event, id_key)
        self._envelope(dataset, event)
        index = self._indices.get(dataset) or self._indices.setdefault(dataset, self._names.events(dataset))
        self.writer.add_serialized(index, doc_id, orjson.dumps(event))
        self.records[dataset] += 1

    def _envelope(self, dataset: str, event: dict[str, Any]) -> None:
        ev = event.setdefault("event", {})
        ev["dataset"] = dataset
        ev.setdefault("module", "network")
        ev.setdefault("kind", "event")
        category = ev.setdefault("category", ["network"])
        if "network" not in category:
            category.append("network")
        event.setdefault("ecs", {"version": ECS_VERSION})
        hcm = event.setdefault("hcm", {})
        hcm["source"] = self.source
        for k, v in self.labels.items():
            hcm.setdefault(k, v)
        if self.tags:
            event["tags"] = list(dict.fromkeys([*event.get("tags", []), *self.tags]))
        observer = event.setdefault("observer", {})
        for k, v in self.observer.items():
            observer.setdefault(k, v)
        if self.file_path is not None:
            event.setdefault("log", {}).setdefault("file", {})["path"] = self.file_path
