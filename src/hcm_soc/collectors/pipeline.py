"""The sink every collector feeds: parse, wrap (envelope), write through the bulk writer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson

from hcm_soc.collectors.base import RawRecord
from hcm_soc.parsers.base import ParseContext, ParseError, ParserSpec, SourceInfo, deep_merge, failure, finish

if TYPE_CHECKING:
    from hcm_soc.collectors.definition import SourceDefinition
    from hcm_soc.store.bulk import BulkWriter
    from hcm_soc.store.names import IndexNames

log = logging.getLogger(__name__)


class IngestPipeline:
    """Sink: RawRecord -> parser -> ECS event -> bulk writer. Never drops a record."""

    def __init__(
        self, writer: BulkWriter, index: str, source: SourceInfo, spec: ParserSpec, ctx: ParseContext
    ) -> None:
        self.writer = writer
        self.index = index
        self.source = source
        self.spec = spec
        self.ctx = ctx
        self.parsed = 0
        self.failed = 0

    @classmethod
    def for_definition(cls, writer: BulkWriter, names: IndexNames, d: SourceDefinition) -> IngestPipeline:
        from hcm_soc.parsers.registry import get_parser

        spec = get_parser(d.format)
        dataset = d.dataset or spec.default_dataset
        source = SourceInfo(
            name=d.name,
            dataset=dataset,
            module=spec.module,
            tags=tuple(d.tags),
            labels=d.labels,
            host=d.host,
            observer=d.observer,
        )
        ctx = ParseContext(dataset=dataset, timezone=d.zone, options=d.options)
        return cls(writer, names.events(dataset), source, spec, ctx)

    def handle(self, record: RawRecord) -> None:
        data = record.data
        original = data if isinstance(data, str) else orjson.dumps(data).decode()
        ctx = ParseContext(self.ctx.dataset, self.ctx.timezone, record.received, self.ctx.options)
        try:
            event = finish(
                self.spec.parse(data, ctx), original, self.source, record.received, list(record.tags)
            )
            self.parsed += 1
        except ParseError as e:
            event = failure(
                original, self.source, record.received, f"{self.spec.name}: {e}", tags=list(record.tags)
            )
            self.failed += 1
        if record.fields:
            deep_merge(event, record.fields)
        self.writer.add(self.index, event, id_key=record.id_key)

    def flush(self) -> None:
        self.writer.flush()

    def stats(self) -> dict[str, int]:
        return {"parsed": self.parsed, "parse_failures": self.failed, **self.writer.stats()}
