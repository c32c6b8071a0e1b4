"""The batch's requests to Elasticsearch: `_msearch` in as few calls as allowed, as many searches at
once as the data nodes have processors, and whether a sub-search's answer can be used
(`hcm_soc.detection.batch`, docs/detection-cost.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Sub-searches per `_msearch` request (keeps a request body well under http.max_content_length).
SEARCHES_PER_REQUEST = 100


def search_concurrency(es: Elasticsearch) -> int | None:
    """How many searches of one `_msearch` Elasticsearch should run at once: the processors of the
    cluster's data nodes (None when the node info cannot be read: Elasticsearch's default then).

    The batch's searches are CPU-bound (automata and term walks); Elasticsearch's default runs more
    of them at once than there are processors, and they then slow each other down (measured on 2
    cores: 22 count searches in 4.2 s by default, 3.5 s two at a time, 7.0 s one at a time)."""
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    cached = _CONCURRENCY.get(id(es))
    if cached is not None and cached[0] is es:
        return cached[1]
    value: int | None = None
    try:
        info = es.nodes.info(metric="os", filter_path="nodes.*.os.allocated_processors,nodes.*.roles")
        nodes = info.get("nodes", {}).values()
        value = (
            sum(
                int(n.get("os", {}).get("allocated_processors", 0))
                for n in nodes
                if any(r == "data" or r.startswith("data_") for r in n.get("roles", ["data"]))
            )
            or None
        )
    except (AttributeError, TypeError, ValueError, ApiError, TransportError):
        value = None  # no node info (a restricted user, a client wrapper): Elasticsearch's default
    if len(_CONCURRENCY) > 64:
        _CONCURRENCY.clear()  # clients come and go (tests, benchmarks): keep the cache small
    _CONCURRENCY[id(es)] = (es, value)
    return value


_CONCURRENCY: dict[int, tuple[Any, int | None]] = {}


def msearch_all(es: Elasticsearch, requests: Sequence[tuple[tuple[str, ...], dict[str, Any]]]) -> list[Any]:
    """The responses of `requests` (indices, body), in order, in as few `_msearch` calls as allowed."""
    responses: list[Any] = []
    extra: dict[str, Any] = {}
    if len(requests) > 1 and (concurrency := search_concurrency(es)) is not None:
        extra["max_concurrent_searches"] = concurrency
    for i in range(0, len(requests), SEARCHES_PER_REQUEST):
        searches: list[dict[str, Any]] = []
        for indices, body in requests[i : i + SEARCHES_PER_REQUEST]:
            header = {"index": ",".join(indices), "allow_no_indices": True, "ignore_unavailable": True}
            searches += [header, body]
        # pre_filter_shard_size=1: the can_match phase drops backing indices outside the window
        resp = es.msearch(searches=searches, pre_filter_shard_size=1, **extra)
        responses += resp["responses"]
    return responses


def problem(resp: dict[str, Any]) -> str | None:
    """Why a sub-search's answer cannot be used: an error, or shards that failed (partial hits
    would silently lose matches)."""
    if "error" in resp:
        err = resp["error"]
        if isinstance(err, dict):
            root = (err.get("root_cause") or [{}])[0]
            return f"{err.get('type')}: {root.get('reason') or err.get('reason')}"
        return str(err)
    shards = resp.get("_shards", {})
    if shards.get("failed"):
        failure = (shards.get("failures") or [{}])[0].get("reason", {})
        reason = failure.get("reason") if isinstance(failure, dict) else failure
        return f"{shards['failed']} of {shards.get('total')} shard(s) failed: {reason}"
    if resp.get("timed_out"):
        return "the search timed out"
    return None
