"""Shared test helpers: free loopback ports, and the real Elasticsearch of the session.

The node is the project's local development node (started here on a free port in a temporary
directory and stopped at the end), or the cluster named by HCM_SOC_TEST_ES_URL; each test that
asks for `names`/`installed` gets its own index prefix. Integration and browser tests share it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.config import load_settings
from hcm_soc.store.client import make_client
from hcm_soc.store.localnode import LocalNode
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install, uninstall


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def es_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("HCM_SOC_TEST_ES_URL")
    if external:
        yield external
        return
    node = LocalNode(
        tmp_path_factory.mktemp("es-node"), port=free_port(), cluster_name="hcm-soc-test", heap="1g"
    )
    node.start(timeout=300)
    try:
        yield node.url
    finally:
        node.stop()


@pytest.fixture(scope="session")
def es(es_url: str) -> Elasticsearch:
    client = make_client(load_settings(env={}), urls=[es_url])
    if not os.environ.get("HCM_SOC_TEST_ES_URL"):
        # our own throwaway node: hundreds of tests each create a few data streams, which this node
        # cannot delete (see store.templates.uninstall); do not let the default 1,000-shard cap fail them
        client.cluster.put_settings(persistent={"cluster.max_shards_per_node": 100_000})
    return client


@pytest.fixture
def names(es: Elasticsearch) -> Iterator[IndexNames]:
    """A fresh prefix for this test; everything under it is removed afterwards where possible."""
    n = IndexNames(prefix=f"t{uuid.uuid4().hex[:10]}", namespace="test")
    yield n
    uninstall(es, n)


@pytest.fixture
def installed(es: Elasticsearch, names: IndexNames) -> IndexNames:
    install(es, build_items(names))
    return names


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"
