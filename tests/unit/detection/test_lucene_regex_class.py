"""Character classes in Sigma regexes as Lucene reads them: a '-' at either end is literal."""

from __future__ import annotations

import pytest

from hcm_soc.detection.lucene_regex import lucene_regex


@pytest.mark.parametrize(
    ("sigma", "lucene"),
    [
        ("^[A-Za-z0-9_-]{40,}$", "[A-Za-z0-9\\_\\-]{40,}"),
        ("^[-a-z]+$", "[\\-a-z]+"),
        ("^[^-a]$", "[^\\-a]"),
        ("^[a-z]$", "[a-z]"),
    ],
)
def test_dash_at_class_edges_is_escaped_and_ranges_are_kept(sigma: str, lucene: str) -> None:
    assert lucene_regex(sigma) == lucene
