"""`POST /api/ingest/{dataset}`: events pushed by an integration (an analyst's or admin's API token,
or a console session), as NDJSON (one JSON object per line) or as one JSON array of objects.

Each event goes through the collectors' `IngestPipeline` (the `jsonl` parser, the envelope, the
bulk writer with its spool), so it is stored exactly like one from the HTTP ingest collector; an
event the parser refuses is still stored, as a parse failure with its original text, and listed
in `rejected`. Ids are deterministic like the collector's: `X-Batch-Id` (1-128 visible ASCII
characters) gives `api:<user>:<dataset>:b:<batch>:<n>:<sha256(event)>`, otherwise
`api:<user>:<dataset>:d:<sha256(body)>:<n>` — a retried request writes nothing new.
The writer is flushed before the answer: 202 means stored in Elasticsearch or in the spool.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool

from hcm_soc.collectors.base import RawRecord
from hcm_soc.errors import HcmSocError
from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.web.api.deps import get_services, writer
from hcm_soc.web.api.schemas import ERRORS, IngestOut
from hcm_soc.web.auth import Principal
from hcm_soc.web.errors import ApiError
from hcm_soc.web.services import WebServices

router = APIRouter(prefix="/ingest", tags=["ingest"], responses=ERRORS)

#: the HTTP ingest collector's default body limit (collectors' http.max_body_bytes)
MAX_BODY = 10 * 1024 * 1024
MAX_REPORTED_REJECTIONS = 1000
_DATASET = re.compile(r"^[a-z0-9][a-z0-9_.]{0,99}$")
_BATCH_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def split_events(body: bytes) -> list[tuple[int, str]]:
    """(position, event text) of every event: array elements (1-based index) or non-blank NDJSON
    lines (1-based line number). A body that is not JSON as a whole is read as NDJSON."""
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("["):
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ApiError(
                422, "invalid", f"the body starts like a JSON array but is not valid JSON: {e}"
            ) from None
        if not isinstance(items, list):
            raise ApiError(422, "invalid", "expected a JSON array of event objects or NDJSON")
        return [(n, orjson.dumps(item).decode()) for n, item in enumerate(items, start=1)]
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            out.append((n, line))
    return out


def store_events(
    services: WebServices, username: str, dataset: str, body: bytes, batch_id: str | None
) -> dict[str, Any]:
    """Parse and write every event of `body`; the answer the route returns (blocking: run it in a
    worker thread)."""
    source = f"api.{username}"
    events = split_events(body)
    pipeline, lock = services.ingest_pipeline(source, dataset)
    received = datetime.now(UTC)
    base = (
        f"api:{username}:{dataset}:b:{batch_id}"
        if batch_id
        else f"api:{username}:{dataset}:d:{hashlib.sha256(body).hexdigest()}"
    )
    ctx = ParseContext(pipeline.ctx.dataset, pipeline.ctx.timezone, received, pipeline.ctx.options)
    accepted = 0
    rejected: list[dict[str, Any]] = []
    with lock:
        try:
            for n, text in events:
                try:
                    # the same parse the pipeline makes, to tell the client which events failed
                    pipeline.spec.parse(text, ctx)
                    accepted += 1
                except ParseError as e:
                    rejected.append({"line": n, "error": str(e)})
                id_key = (
                    f"{base}:{n}:{hashlib.sha256(text.encode()).hexdigest()}" if batch_id else f"{base}:{n}"
                )
                pipeline.handle(RawRecord(data=text, id_key=id_key, received=received))
            pipeline.flush()
        except HcmSocError as e:  # Elasticsearch unreachable and no spool, or the spool is full
            raise ApiError(
                503,
                "unavailable",
                f"storage unavailable, retry later (safe to repeat): {e}",
                headers={"Retry-After": "30"},
            ) from e
    answer: dict[str, Any] = {
        "source": source,
        "dataset": dataset,
        "accepted": accepted,
        "stored": len(events),
        "rejected": rejected[:MAX_REPORTED_REJECTIONS],
        "rejected_count": len(rejected),
    }
    if batch_id:
        answer["batch_id"] = batch_id
    return answer


@router.post(
    "/{dataset}",
    summary="Store events (NDJSON or a JSON array) in a dataset",
    status_code=202,
    response_model=IngestOut,
    responses={413: {"description": "body larger than 10 MiB"}, 503: {"description": "storage unavailable"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def ingest(
    dataset: str,
    request: Request,
    batch_id: str | None = Header(None, alias="X-Batch-Id"),
    principal: Principal = writer("analyst", "admin"),
    services: WebServices = Depends(get_services),
) -> IngestOut:
    if not _DATASET.match(dataset):
        raise ApiError(
            422,
            "invalid",
            f"dataset {dataset!r}: expected lowercase letters, digits, '_' or '.', e.g. dvc.app",
        )
    if batch_id is not None and not _BATCH_ID.match(batch_id):
        raise ApiError(422, "invalid", "X-Batch-Id: expected 1 to 128 visible ASCII characters")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise ApiError(
            413, "too_large", f"body of {length} bytes is larger than {MAX_BODY}; send smaller batches"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes; send smaller batches")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(422, "invalid", "empty body: send NDJSON (one event object per line) or a JSON array")
    answer = await run_in_threadpool(store_events, services, principal.username, dataset, body, batch_id)
    return IngestOut.model_validate(answer)
