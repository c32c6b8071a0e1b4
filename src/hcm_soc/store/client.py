"""The Elasticsearch client factory: the one place that knows how to connect.

`HCM_SOC_ES_URL` set means: that cluster, never a local node. Unset means: the
local development node, which must be running (`hcm-soc es start`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from hcm_soc.errors import DependencyUnavailable

if TYPE_CHECKING:
    from hcm_soc.config import Settings


def resolve_urls(settings: Settings) -> list[str]:
    """Cluster URLs from settings, or the local node's URL when it answers."""
    if settings.es.url:
        return list(settings.es.url)
    from hcm_soc.store.localnode import local_node_from_settings

    node = local_node_from_settings(settings)
    if node.health() is None:
        raise DependencyUnavailable(
            f"no Elasticsearch answers at {node.url} (the local development node); "
            "start it with `hcm-soc es start`, or set HCM_SOC_ES_URL to your cluster"
        )
    return [node.url]


def make_client(settings: Settings, urls: list[str] | None = None) -> Elasticsearch:
    """A client for `urls` (default: `resolve_urls(settings)`), with orjson serialisation."""
    es = settings.es
    kwargs: dict[str, object] = {
        "request_timeout": es.request_timeout,
        "serializers": {"application/json": OrjsonSerializer()},
        "retry_on_timeout": False,
        "max_retries": 0,  # the bulk writer and callers own retries
    }
    if es.api_key:
        kwargs["api_key"] = es.api_key
    if es.username and es.password:
        kwargs["basic_auth"] = (es.username, es.password)
    if es.ca_cert:
        kwargs["ca_certs"] = str(es.ca_cert)
    if not es.verify_tls:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False
    return Elasticsearch(urls or resolve_urls(settings), **kwargs)  # type: ignore[arg-type]


def ping(client: Elasticsearch) -> dict[str, Any]:
    """Server info (GET /), or DependencyUnavailable naming the URL and the cause."""
    from elastic_transport import TransportError

    try:
        return dict(client.info())
    except (TransportError, OSError) as e:
        raise DependencyUnavailable(f"Elasticsearch did not answer: {e}") from e
