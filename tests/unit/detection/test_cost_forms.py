"""The cheaper query forms of the hcm-soc pipeline (docs/detection-cost.md): value lists as Lucene
regex unions, Sysmon hash tokens as exact terms, Windows keywords on `hcm.keywords`.

Here: the regex union matches exactly what the wildcard values match (checked with Python's
regex engine on generated strings), the hash tokens the parser writes hold exactly when a
`contains` of a whole token holds, and which rules get which form. The hits on real events
are proven in tests/integration/detection/test_cost_forms.py.
"""

from __future__ import annotations

import random
import re
import textwrap
import uuid
from pathlib import Path

import pytest
from sigma.types import SigmaString

from hcm_soc.detection.compiler import RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.lucene_regex import MAX_UNION_LENGTH, union_regexes
from hcm_soc.parsers.evtx import HASH_LENGTHS, hash_tokens
from hcm_soc.store.names import IndexNames

WIN_PROC = "product: windows\ncategory: process_creation"


def _compile(tmp_path: Path, logsource: str, detection: str) -> str:
    rid = str(uuid.uuid4())
    path = tmp_path / f"{rid}.yml"
    path.write_text(
        f"title: t {rid[:8]}\nid: {rid}\nstatus: test\nlogsource:\n"
        + textwrap.indent(logsource, "  ")
        + "\ndetection:\n"
        + textwrap.indent(textwrap.dedent(detection).strip(), "  ")
        + "\n",
        "utf-8",
    )
    load = load_rules([path])
    assert not load.problems, load.problems
    return RuleCompiler(IndexNames()).compile(load.rules[0]).lucene


def _sigma_fullmatch(value: str, text: str) -> bool:
    """Sigma's wildcard semantics (`*` any run, `?` one character, `\\` escapes) matched whole."""
    pattern, i = "", 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            pattern += re.escape(value[i + 1])
            i += 2
            continue
        pattern += ".*" if c == "*" else "." if c == "?" else re.escape(c)
        i += 1
    return re.fullmatch(pattern, text, re.DOTALL) is not None


def _lucene_fullmatch(regexes: list[str], text: str) -> bool:
    # the escapes union_regexes writes (`\\` before a non-alphanumeric character) mean the same in
    # Python; Lucene's `.` matches any character, newlines included
    return any(re.fullmatch(r, text, re.DOTALL) for r in regexes)


ALPHABET = ["a", "b", "A", "/", "\\", '"', " ", ".", "(", ")", "|", "+", "#", "@", "~", "\n", "é", "😀", "-"]


def test_union_matches_exactly_what_the_values_match() -> None:
    rng = random.Random(6)
    for _ in range(300):
        raw = []
        for _ in range(rng.randint(1, 6)):
            body = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 4)))
            body = body.replace("\\", "\\\\")  # a literal backslash, as a rule writes it
            if rng.random() < 0.3:
                body = body[: len(body) // 2] + rng.choice(["*", "?"]) + body[len(body) // 2 :]
            raw.append(rng.choice(["*", ""]) + body + rng.choice(["*", ""]))
        regexes = union_regexes([SigmaString(v) for v in raw])
        assert regexes is not None
        for _ in range(40):
            text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 7)))
            if rng.random() < 0.5:  # a near miss or a hit: built from one of the values
                text = rng.choice(raw).replace("*", rng.choice(["", "x", "\n"])).replace("?", "q")
                text = text.replace("\\\\", "\\")
            want = any(_sigma_fullmatch(v, text) for v in raw)
            assert _lucene_fullmatch(regexes, text) == want, (raw, regexes, text)


def test_union_groups_by_wildcard_position_and_splits_long_lists() -> None:
    values = [SigmaString(v) for v in ("*ab*", "*cd*", "ef*", "*gh", "*ab*")]
    assert union_regexes(values) == [".*(ab|cd).*", "(ef).*", ".*(gh)"]
    many = [SigmaString(f"*value{n:05d}*") for n in range(400)]
    regexes = union_regexes(many)
    assert regexes is not None and len(regexes) > 1
    assert all(len(r) <= MAX_UNION_LENGTH for r in regexes)
    assert sum(r.count("|") + 1 for r in regexes) == 400
    # Elasticsearch counts UTF-16 code units (an emoji is two) and the backslash the query text
    # puts before "/": both count against index.max_regex_length
    emoji = [SigmaString(f"*{chr(0x1F600 + n % 64)}/{n}*") for n in range(300)]
    regexes = union_regexes(emoji)
    assert regexes is not None and len(regexes) > 1
    for r in regexes:
        assert len(r.encode("utf-16-le")) // 2 + r.count("/") <= MAX_UNION_LENGTH
    assert union_regexes([SigmaString("*" + "x" * 2000 + "*")]) is None  # too long alone


def test_hash_tokens_are_every_full_length_algo_value() -> None:
    md5, sha256 = "A" * 32, "0123456789abcdef" * 4
    assert hash_tokens(f"SHA256={sha256},MD5={md5},IMPHASH={'b' * 32}") == [
        f"sha256={sha256}",
        f"md5={'a' * 32}",
        f"imphash={'b' * 32}",
    ]
    # a contains of `md5=<32 hex>` also holds inside a longer run of digits and after other text
    assert hash_tokens("xMD5=" + "c" * 40) == ["md5=" + "c" * 32]
    assert hash_tokens("MD5=abc,SHA1=zz") == []  # too short, not hex: no token, no false hit
    assert hash_tokens("MD5=" + "d" * 32 + "," * 8200) == []  # not indexed in .caseless either
    assert set(HASH_LENGTHS) == {"md5", "sha1", "sha256", "sha384", "sha512", "imphash"}


def test_hash_tokens_agree_with_substring_semantics() -> None:
    rng = random.Random(7)
    for _ in range(500):
        algo = rng.choice(sorted(HASH_LENGTHS))
        digest = "".join(rng.choice("0123456789abcdef") for _ in range(HASH_LENGTHS[algo]))
        wanted = f"{algo}={digest}"
        noise = "".join(rng.choice("0123456789abcdefMD5SHA=,x") for _ in range(rng.randint(0, 10)))
        digest2 = digest if rng.random() < 0.5 else digest[:-1] + rng.choice("0123456789abcdef")
        text = (noise + f"{algo.upper()}={digest2}" + rng.choice(["", ",", "f", "zz"])).upper()
        assert (wanted in hash_tokens(text)) == (wanted in text.lower()), text


def test_full_hash_tokens_become_terms_partial_ones_stay_wildcards(tmp_path: Path) -> None:
    md5 = "0123456789ABCDEF0123456789ABCDEF"
    text = _compile(
        tmp_path,
        WIN_PROC,
        f"sel:\n  Hashes|contains: ['MD5={md5}', 'MD5=0123', 'SHA1={md5}']\ncondition: sel",
    )
    assert f"hcm.hashes:md5\\={md5.lower()}" in text
    assert "winlog.event_data.Hashes.caseless:(*md5\\=0123* OR *sha1\\=" in text  # not whole tokens


def test_stream_hash_uses_its_own_token_field(tmp_path: Path) -> None:
    text = _compile(
        tmp_path,
        "product: windows\ncategory: create_stream_hash",
        f"sel:\n  Hash|contains: 'IMPHASH={'1' * 32}'\ncondition: sel",
    )
    assert text.endswith(f"hcm.hash:imphash\\={'1' * 32}")


def test_long_lists_become_regexes_short_ones_and_all_lists_do_not(tmp_path: Path) -> None:
    text = _compile(tmp_path, WIN_PROC, "sel:\n  CommandLine|contains: ['a/b', 'X Y', 'z']\ncondition: sel")
    assert text.endswith(r"process.command_line.caseless:/.*(a\/b|x\ y|z).*/")
    text = _compile(tmp_path, WIN_PROC, "sel:\n  CommandLine|contains: ['a', 'b']\ncondition: sel")
    assert text.endswith("(process.command_line.caseless:(*a* OR *b*))")
    text = _compile(tmp_path, WIN_PROC, "sel:\n  CommandLine|contains|all: ['a', 'b', 'c']\ncondition: sel")
    assert text.endswith(
        "(process.command_line.caseless:*a* AND process.command_line.caseless:*b* AND "
        "process.command_line.caseless:*c*)"
    )
    # exact values stay terms next to the regex
    text = _compile(tmp_path, WIN_PROC, "sel:\n  CommandLine: ['exact', '*a', '*b', 'c*']\ncondition: sel")
    assert "process.command_line.caseless:exact" in text and r"/.*(a|b)/" in text and "/(c).*/" in text


def test_windows_keywords_search_hcm_keywords(tmp_path: Path) -> None:
    text = _compile(
        tmp_path, WIN_PROC, "kw:\n  - 'Mimikatz'\n  - 'sekurlsa::'\n  - '*lsadump*'\ncondition: kw"
    )
    assert text.endswith(
        r"(hcm.keywords:/.*(mimikatz|sekurlsa\:\:|lsadump).*/ OR message.caseless:/.*(mimikatz|sekurlsa\:\:|lsadump).*/)"
    )
    text = _compile(tmp_path, WIN_PROC, "kw:\n  - 'mimikatz'\ncondition: kw")
    assert text.endswith(" AND *mimikatz*")  # unbound: query_string searches the keyword fields


@pytest.mark.parametrize("source", ["product: linux\nservice: auth", "category: webserver"])
def test_keyword_lists_of_other_sources_go_to_their_keyword_fields(tmp_path: Path, source: str) -> None:
    text = _compile(tmp_path, source, "kw:\n  - 'a'\n  - 'b'\n  - 'c'\ncondition: kw")
    fields = {"product: linux\nservice: auth": ["message.caseless"]}.get(
        source, ["url.original.caseless", "url.full.caseless", "user_agent.original.caseless"]
    )
    for f in fields:
        assert f"{f}:/.*(a|b|c).*/" in text


def test_an_empty_alternative_is_written_as_an_empty_group() -> None:
    from hcm_soc.detection.lucene_regex import lucene_regex

    translated = lucene_regex("calc (?:\\(|)1")  # Lucene refuses `(\(|)`: expected ')'
    assert translated == ".*calc\\ (\\(|())1.*"
    for text, want in (("calc (1", True), ("calc 1", True), ("calc x1", False)):
        assert (re.fullmatch(translated, text, re.DOTALL) is not None) == want
