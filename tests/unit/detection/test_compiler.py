"""The hcm-soc pipeline and RuleCompiler: the Lucene text, log-source scope, rejected rules, the
regex translation, and that sigma-cli with `-p hcm_soc` prints exactly what the compiler compiles.

(The hits these queries return on real events are proven in tests/integration/detection/.)
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from sigma.types import SigmaRegularExpressionFlag as F

from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompileError, RuleCompiler
from hcm_soc.detection.fieldmaps.sources import find_source
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.lucene_regex import UnsupportedRegex, lucene_regex
from hcm_soc.detection.matcher import sigma_match
from hcm_soc.detection.model import LoadedRule
from hcm_soc.store.names import IndexNames

SIGMA = Path(sys.executable).parent / "sigma"


def write_rule(tmp_path: Path, logsource: str, detection: str) -> Path:
    rid = str(uuid.uuid4())
    path = tmp_path / f"{rid}.yml"
    path.write_text(
        f"title: t {rid[:8]}\nid: {rid}\nstatus: test\nlogsource:\n"
        + textwrap.indent(textwrap.dedent(logsource).strip(), "  ")
        + "\ndetection:\n"
        + textwrap.indent(textwrap.dedent(detection).strip(), "  ")
        + "\n",
        "utf-8",
    )
    return path


def loaded(path: Path) -> LoadedRule:
    load = load_rules([path])
    assert not load.problems, load.problems
    return load.rules[0]


def compile_text(tmp_path: Path, logsource: str, detection: str) -> str:
    return RuleCompiler(IndexNames()).compile(loaded(write_rule(tmp_path, logsource, detection))).lucene


WIN_PROC = "product: windows\ncategory: process_creation"


def test_process_creation_gets_sysmon_and_security_conditions(tmp_path: Path) -> None:
    text = compile_text(tmp_path, WIN_PROC, "sel:\n  Image|endswith: '\\WHOAMI.exe'\ncondition: sel")
    assert text == (
        r"((winlog.channel.caseless:microsoft\-windows\-sysmon\/operational AND winlog.event_id:1) OR "
        r"(winlog.channel.caseless:security AND winlog.event_id:4688)) AND "
        # the exact name in front lets Lucene skip the wildcard where no whoami.exe ran
        r"(process.name.caseless:whoami.exe AND process.executable.caseless:*\\whoami.exe)"
    )


def test_parent_image_and_parent_process_name_map_to_the_parent_executable(tmp_path: Path) -> None:
    for name in ("ParentImage", "ParentProcessName"):
        text = compile_text(tmp_path, WIN_PROC, f"sel:\n  {name}|endswith: '\\cmd.exe'\ncondition: sel")
        assert text.endswith(
            r"(process.parent.name.caseless:cmd.exe AND process.parent.executable.caseless:*\\cmd.exe)"
        )


def test_unmapped_windows_fields_are_event_data_and_cased_uses_the_field_itself(tmp_path: Path) -> None:
    text = compile_text(tmp_path, WIN_PROC, "sel:\n  IntegrityLevel|cased: High\ncondition: sel")
    assert text.endswith("winlog.event_data.IntegrityLevel:High")


def test_scope_is_the_log_source_alone(tmp_path: Path) -> None:
    rule = loaded(write_rule(tmp_path, "product: linux\nservice: sshd", "kw:\n  - Failed\ncondition: kw"))
    compiled = RuleCompiler(IndexNames(prefix="x")).compile(rule)
    assert compiled.scope == {
        "bool": {
            "filter": [
                {"terms": {"event.module.caseless": ["system"]}},
                {"terms": {"process.name.caseless": ["sshd", "sshd-session"]}},
            ]
        }
    }
    assert compiled.lucene == (
        r"(event.module.caseless:system AND (process.name.caseless:(sshd OR sshd\-session))) AND *failed*"
    )
    assert compiled.indices == ("x-events-*",)
    assert compiled.query["query_string"]["query"] == compiled.lucene
    assert compiled.query["query_string"]["fields"] == ["message.caseless"]  # linux keywords: the log text


@pytest.mark.parametrize(
    ("logsource", "field", "expected"),
    [
        ("category: webserver", "cs-uri-query", "url.query.caseless"),
        ("category: webserver", "c-useragent", "user_agent.original.caseless"),
        ("category: proxy", "c-uri", "url.original.caseless"),
        ("category: firewall", "dst_ip", "destination.ip"),
        ("category: dns", "query", "dns.question.name.caseless"),
        ("product: zeek\nservice: ssl", "server_name", "tls.client.server_name.caseless"),
        ("product: zeek\nservice: http", "uri", "url.original.caseless"),
    ],
)
def test_field_names_per_log_source(tmp_path: Path, logsource: str, field: str, expected: str) -> None:
    value = "10.0.0.1" if expected.endswith(".ip") else "x"
    text = compile_text(tmp_path, logsource, f"sel:\n  {field}: '{value}'\ncondition: sel")
    assert f"{expected}:" in text


def test_rule_without_a_data_source_is_rejected_with_the_log_source(tmp_path: Path) -> None:
    rule = loaded(
        write_rule(tmp_path, "product: linux\ncategory: process_creation", "sel:\n  Image: x\ncondition: sel")
    )
    with pytest.raises(
        RuleCompileError, match=r"no hcm-soc data source for product=linux category=process_creation"
    ):
        RuleCompiler(IndexNames()).compile(rule)
    compiled, problems = RuleCompiler(IndexNames()).compile_all([rule])
    assert (
        compiled == [] and problems[0].rule_id == rule.id and "no hcm-soc data source" in problems[0].message
    )


@pytest.mark.parametrize(
    ("detection", "reason"),
    [
        ("sel:\n  UtcTime|minute: 5\ncondition: sel", "timestamp part"),
    ],
)
def test_inexpressible_rules_are_rejected_with_a_reason(tmp_path: Path, detection: str, reason: str) -> None:
    rule = loaded(write_rule(tmp_path, WIN_PROC, detection))
    with pytest.raises(RuleCompileError, match=re.escape(reason)) as info:
        RuleCompiler(IndexNames()).compile(rule)
    assert rule.id in str(info.value)


def test_patterns_on_typed_fields_use_the_raw_event_data_on_windows_and_are_rejected_elsewhere(
    tmp_path: Path,
) -> None:
    text = compile_text(tmp_path, WIN_PROC, "sel:\n  DestinationIp|contains: '.10.'\ncondition: sel")
    assert text.endswith(r"winlog.event_data.DestinationIp.caseless:*.10.*")
    text = compile_text(tmp_path, WIN_PROC, "sel:\n  DestinationIp|startswith: '10.'\ncondition: sel")
    assert text.endswith(r"destination.ip:10.0.0.0\/8")
    rule = loaded(
        write_rule(tmp_path, "category: firewall", "sel:\n  dst_ip|contains: '.10.'\ncondition: sel")
    )
    with pytest.raises(RuleCompileError, match=r"IP field destination\.ip"):
        RuleCompiler(IndexNames()).compile(rule)
    rule = loaded(write_rule(tmp_path, "category: firewall", "sel:\n  dst_port: '4*'\ncondition: sel"))
    with pytest.raises(RuleCompileError, match=r"numeric field destination\.port"):
        RuleCompiler(IndexNames()).compile(rule)


@pytest.mark.parametrize(
    ("detection", "reason"),
    [
        ("sel:\n  Image|fieldref: ParentImage\ncondition: sel", "fieldref"),
        ("sel:\n  CommandLine|re: '\\bnet\\b'\ncondition: sel", "Lucene regex cannot express"),
        ("sel:\n  CommandLine|re: 'a(?=b)'\ncondition: sel", "look-arounds"),
    ],
)
def test_what_lucene_cannot_say_is_checked_in_python_and_sigma_cli_refuses_it(
    tmp_path: Path, detection: str, reason: str
) -> None:
    path = write_rule(tmp_path, WIN_PROC, detection)
    compiled = RuleCompiler(IndexNames()).compile(loaded(path))
    assert isinstance(compiled, PythonCheckedRule)
    assert reason in compiled.residual
    # the query selects the log source only; the rule itself is checked on each event
    assert compiled.lucene.startswith("(winlog.channel.caseless:microsoft") and "4688" in compiled.lucene
    assert compiled.lucene.count("AND") == 2
    out = subprocess.run(
        [str(SIGMA), "convert", "-t", "lucene", "-p", "hcm_soc", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0 and "Lucene" in out.stderr + out.stdout


def _sysmon1(**fields: object) -> dict[str, object]:
    ev: dict[str, object] = {"winlog": {"channel": "Microsoft-Windows-Sysmon/Operational", "event_id": "1"}}
    ev.update(fields)
    return ev


def test_python_check_follows_sigma_semantics(tmp_path: Path) -> None:
    det = (
        "sel:\n  Image|fieldref: ParentImage\n  CommandLine|re: '\\bRUN\\b'\n"
        "kw:\n  - 'Evil Thing'\nexcl:\n  User|startswith: 'NT AUTH'\n"
        "condition: (sel or kw) and not excl"
    )
    compiled = RuleCompiler(IndexNames()).compile(loaded(write_rule(tmp_path, WIN_PROC, det)))
    assert isinstance(compiled, PythonCheckedRule)
    rule = compiled.checked
    same = {
        "executable": "C:\\A\\x.EXE",
        "command_line": "do RUN now",
        "parent": {"executable": "c:\\a\\X.exe"},
    }
    assert sigma_match(rule, _sysmon1(process=same))  # fieldref compares case-insensitively
    assert not sigma_match(rule, _sysmon1(process={**same, "command_line": "do RUNNING"}))  # \b
    assert not sigma_match(rule, _sysmon1(process={**same, "command_line": "do run now"}))  # |re is cased
    other = {**same, "parent": {"executable": "c:\\b\\x.exe"}}
    assert not sigma_match(rule, _sysmon1(process=other))
    assert sigma_match(rule, _sysmon1(process=other, message="an EVIL THING"))  # keyword, case-insensitive
    excluded = _sysmon1(
        process=same,
        winlog={"channel": "Security", "event_id": "4688", "event_data": {"User": "nt authority\\system"}},
    )
    assert not sigma_match(rule, excluded)
    assert not sigma_match(
        rule, {"winlog": {"channel": "System", "event_id": "1"}, "process": same}
    )  # log source


def test_compiling_does_not_change_the_loaded_rule(tmp_path: Path) -> None:
    rule = loaded(write_rule(tmp_path, WIN_PROC, "sel:\n  Image|endswith: '\\a.exe'\ncondition: sel"))
    compiler = RuleCompiler(IndexNames())
    assert compiler.compile(rule).lucene == compiler.compile(rule).lucene


@pytest.mark.parametrize(
    ("pattern", "flags", "expected"),
    [
        ("abc", (), ".*abc.*"),
        ("^abc$", (), "abc"),
        (r"\d+\.exe$", (), r".*[0-9]+\.exe"),
        ("^a|b$", (), "(a.*|.*b)"),
        ("(?:x|y)z", (), ".*(x|y)z.*"),
        ("A.B", (F.IGNORECASE,), ".*a[^\n]b.*"),
        ("a.b", (F.DOTALL,), ".*a.b.*"),
        ("^x$", (F.MULTILINE,), "(.*\n)?x(\n.*)?"),
        ("a{2,}?b{,3}", (), ".*a{2,}b{0,3}.*"),
        ("[\\w.-]+@x", (), ".*[a-zA-Z0-9_\\.\\-]+\\@x.*"),
        ("(?i)AB", (), ".*ab.*"),
        ("(^[a-z]{4}$)|(^[a-z]{8}$)", (), "([a-z]{4}|[a-z]{8})"),
    ],
)
def test_lucene_regex_translation(pattern: str, flags: tuple[F, ...], expected: str) -> None:
    assert lucene_regex(pattern, flags) == expected


SAMPLES = ["", "abc", "ABC", "x1.exe", "a\nb", "first\nsecond", "user@x.org", "aab", "ping 10.0.0.1 -n 5"]


@pytest.mark.parametrize(
    ("pattern", "flags"),
    [
        ("b", ()),
        ("^a", ()),
        (r"\d\.exe$", ()),
        ("^second$", (F.MULTILINE,)),
        ("a.b", ()),
        ("a.b", (F.DOTALL,)),
        ("AB", (F.IGNORECASE,)),
        (r"[^\s]+@x\.org", ()),
        (r"ping\s\S+\s-n\s\d", ()),
        ("a{2}b|^$", ()),
    ],
)
def test_translated_regex_accepts_what_the_sigma_regex_finds(pattern: str, flags: tuple[F, ...]) -> None:
    """Lucene regexes match the whole value; the translation with Python's fullmatch must agree with
    the original searched anywhere in the value (the .caseless value is lower-case with `i`)."""
    translated = lucene_regex(pattern, flags)
    pyflags = re.IGNORECASE if F.IGNORECASE in flags else 0
    pyflags |= re.MULTILINE if F.MULTILINE in flags else 0
    pyflags |= re.DOTALL if F.DOTALL in flags else 0
    for s in SAMPLES:
        value = s.lower() if F.IGNORECASE in flags else s
        # Lucene '.' matches any character: DOTALL gives Python the same meaning
        assert bool(re.fullmatch(translated, value, re.DOTALL)) == bool(re.search(pattern, s, pyflags)), s


@pytest.mark.parametrize("pattern", [r"\bx", "a(?!b)", r"(a)\1", "a^b", "x*+"])
def test_lucene_regex_refuses_what_lucene_cannot_do(pattern: str) -> None:
    with pytest.raises(UnsupportedRegex):
        lucene_regex(pattern)


def test_find_source_prefers_the_most_specific_row() -> None:
    row = find_source("windows", "process_creation", None)
    assert row is not None and row.name == "windows/process_creation"
    row = find_source("windows", None, "security")
    assert row is not None and row.name == "windows/security"
    row = find_source("nginx", "webserver", None)
    assert row is not None and row.name == "webserver"
    assert find_source("linux", "process_creation", None) is None
    assert find_source("aws", None, "cloudtrail") is None


@pytest.mark.parametrize(
    ("logsource", "detection"),
    [
        (
            WIN_PROC,
            "sel:\n  Image|endswith: ['\\\\a.exe', '\\\\B.EXE']\n  CommandLine|contains|all: [' /c ', 'Temp']\nfilter:\n  User|cased: SYSTEM\ncondition: sel and not filter",
        ),
        (
            WIN_PROC,
            "sel:\n  CommandLine|re|i: '^cmd.*\\d{3}'\n  DestinationIp|cidr: ['10.0.0.0/8', 'fe80::/10']\ncondition: sel",
        ),
        ("product: linux\nservice: auth", "kw:\n  - 'Failed password'\n  - 'Invalid user *'\ncondition: kw"),
        (
            "category: webserver",
            "sel:\n  cs-uri-query|contains: ['union select', '../']\n  sc-status|gte: 400\ncondition: sel",
        ),
        ("category: dns", "sel:\n  query|endswith: '.onion'\ncondition: sel"),
        # the cheaper forms (docs/detection-cost.md): regex unions, hash tokens, Windows keywords
        (WIN_PROC, "sel:\n  CommandLine|contains: ['a/b', 'X Y', '\"q\"', 'c*d']\ncondition: sel"),
        (
            WIN_PROC,
            "sel:\n  Hashes|contains: ['MD5=0123456789ABCDEF0123456789ABCDEF', 'SHA1=0123']\ncondition: sel",
        ),
        (WIN_PROC, "kw:\n  - 'Mimikatz'\n  - 'sekurlsa::'\n  - 'lsadump::'\ncondition: kw"),
    ],
)
def test_sigma_cli_with_hcm_soc_pipeline_prints_the_compiled_query(
    tmp_path: Path, logsource: str, detection: str
) -> None:
    path = write_rule(tmp_path, logsource, detection)
    expected = RuleCompiler(IndexNames(prefix="anything")).compile(loaded(path)).lucene
    out = subprocess.run(
        [str(SIGMA), "convert", "-t", "lucene", "-p", "hcm_soc", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_sigma_cli_lists_the_pipeline() -> None:
    out = subprocess.run(
        [str(SIGMA), "list", "pipelines"], capture_output=True, text=True, timeout=120, check=True
    )
    assert re.search(r"^\|\s*hcm_soc\s*\|", out.stdout, re.MULTILINE)
