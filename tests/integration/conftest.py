"""Integration tests run against a real Elasticsearch: the fixtures `es_url`, `es`, `names`,
`installed` and `spool_dir` live in tests/conftest.py (shared with the browser tests)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
