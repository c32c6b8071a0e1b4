"""Fixtures of the incident integration tests: stored alerts, a service with a controllable clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from elasticsearch import Elasticsearch

from hcm_soc.incidents.service import IncidentService
from hcm_soc.models.alert import Alert
from hcm_soc.store.alerts import AlertStore
from hcm_soc.store.names import IndexNames
from tests.unit.incidents.factory import FakeClock, make_alert


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(es: Elasticsearch, installed: IndexNames, clock: FakeClock) -> IncidentService:
    return IncidentService(es, installed, clock=clock)


@pytest.fixture
def stored_alert(es: Elasticsearch, installed: IndexNames) -> Callable[..., Alert]:
    """Build an alert, store it (refreshed) and return it."""
    store = AlertStore(es, installed)

    def make(**kw: object) -> Alert:
        alert = make_alert(**kw)  # type: ignore[arg-type]
        assert store.create_many([alert], refresh="true").created == 1
        return alert

    return make
