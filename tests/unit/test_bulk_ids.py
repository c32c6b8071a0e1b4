"""Deterministic ids and names."""

from __future__ import annotations

import pytest

from hcm_soc.store.bulk import make_id
from hcm_soc.store.names import IndexNames


def test_ids_are_deterministic_and_distinct() -> None:
    assert make_id("syslog:10.0.0.1:514:42") == make_id(b"syslog:10.0.0.1:514:42")
    assert make_id("a") != make_id("b")
    assert len(make_id("x")) == 20
    assert len({make_id(f"file:{i}") for i in range(10_000)}) == 10_000


def test_index_names() -> None:
    n = IndexNames("hcm", "default")
    assert n.events("system.auth") == "hcm-events-system.auth-default"
    assert n.deadletter == "hcm-deadletter-default"
    with pytest.raises(ValueError, match="dataset 'System Auth'"):
        n.events("System Auth")
