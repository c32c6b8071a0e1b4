"""The console's catalogs: the same keys and placeholders in both languages, Vietnamese with its
diacritics, and `t` filling placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

from hcm_soc.web.i18n import CATALOGS, EN, VI, pick_lang, t, translator

TEMPLATES = Path(__file__).resolve().parents[3] / "src" / "hcm_soc" / "web" / "templates"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys() -> None:
    assert set(VI) == set(EN)
    assert set(CATALOGS) == {"vi", "en"}


def test_placeholders_match() -> None:
    for key in VI:
        assert placeholders(VI[key]) == placeholders(EN[key]), key


def test_vietnamese_has_diacritics() -> None:
    assert VI["incidents.title"] == "Hàng đợi sự cố"
    assert VI["time.overdue"] == "quá hạn {d}"
    with_marks = sum(
        1
        for v in VI.values()
        if re.search(r"[àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ]", v)
    )
    assert with_marks > len(VI) * 0.8  # nearly every Vietnamese string carries tone marks


def test_every_key_the_templates_use_exists() -> None:
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_0-9.]+)["']""", path.read_text(encoding="utf-8")))
    assert used, "the templates call t(...)"
    assert used - set(VI) == set()


def test_t_fills_placeholders_and_shows_unknown_keys() -> None:
    assert t("time.left", "vi", d="12 phút") == "còn 12 phút"
    assert t("time.left", "en", d="12 min") == "12 min left"
    assert t("no.such.key", "en") == "no.such.key"
    assert translator("en")("incidents.shown", shown=2, total=5) == "Showing 2 of 5 incidents."


def test_pick_lang() -> None:
    assert pick_lang("en") == "en"
    assert pick_lang("vi") == "vi"
    assert pick_lang("fr") is None
    assert pick_lang(None) is None
