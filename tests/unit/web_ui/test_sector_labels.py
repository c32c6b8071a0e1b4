"""Sectors show as words in the page's language, whatever id the inventory uses."""

from __future__ import annotations

import typing

from hcm_soc.inventory.model import Sector
from hcm_soc.web.templating import templates


def render(value: str, lang: str) -> str:
    env = templates.env
    return env.from_string("{{ s|sector_label }}").render(s=value, lang=lang)


def test_every_inventory_sector_has_a_label_in_both_languages() -> None:
    for sector in typing.get_args(Sector):
        vi, en = render(sector, "vi"), render(sector, "en")
        assert vi != sector and en != sector and vi != en, sector
    assert render("e_government", "vi") == "Chính quyền điện tử, cải cách hành chính"


def test_an_unknown_sector_id_is_shown_as_it_is() -> None:
    assert render("space_program", "en") == "space_program"
