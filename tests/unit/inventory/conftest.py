"""Builders for small inventories written to tmp files (so the tests go through the loader)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

DEPARTMENTS = """\
departments:
  - id: sotttt
    name: Sở Thông tin và Truyền thông
    contacts:
      - name: Quản trị hệ thống
        email: quantri@sotttt.example.vn
      - name: Tổ kỹ thuật
        email: kythuat@sotttt.example.vn
        role: technical
      - name: Lãnh đạo Sở
        email: lanhdao@sotttt.example.vn
        role: escalation
  - id: sogtvt
    name: Sở Giao thông vận tải
    contacts:
      - name: Phòng Kỹ thuật
        email: kythuat@sogtvt.example.vn
"""


@pytest.fixture
def write_inventory(tmp_path: Path) -> Callable[[str], Path]:
    """Write `assets:` YAML (indented as a top-level list) after the two standard departments."""

    def write(assets_yaml: str, name: str = "inv.yml") -> Path:
        path = tmp_path / name
        path.write_text(DEPARTMENTS + "assets:\n" + assets_yaml, "utf-8")
        return path

    return write
