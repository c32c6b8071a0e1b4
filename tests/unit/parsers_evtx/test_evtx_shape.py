"""EVTX records from real attack recordings -> Winlogbeat-shaped ECS, and the EVTX reader.

The expected values were read from the recordings themselves (EVTX-ATTACK-SAMPLES);
the tests skip when the corpus folder (HCM_SOC_EVTX_DIR) is absent.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hcm_soc.collectors.base import RawRecord
from hcm_soc.collectors.evtx import EvtxReader, EvtxReadError, expand_paths, ingest_paths
from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.parsers.evtx import parse_evtx_record
from hcm_soc.parsers.registry import get_parser

CORPUS = Path(os.environ.get("HCM_SOC_EVTX_DIR", "/work/shared/corpus/evtx-attack-samples"))
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"EVTX corpus not found at {CORPUS} (set HCM_SOC_EVTX_DIR)"
)
CTX = ParseContext(dataset="windows.evtx")


@cache
def _records(rel: str) -> dict[int, RawRecord]:
    """The file's records through the real reader, by System/EventRecordID."""
    return {r.fields["winlog"]["record_id"]: r for r in EvtxReader().iter_records(CORPUS / rel)}


def _parsed(rel: str, record_id: int) -> dict[str, Any]:
    raw = _records(rel)[record_id]
    assert isinstance(raw.data, dict)
    return parse_evtx_record(copy.deepcopy(raw.data), CTX)


def test_registry_points_at_this_parser() -> None:
    assert get_parser("evtx").parse is parse_evtx_record


@needs_corpus
def test_sysmon_1_process_creation() -> None:
    e = _parsed("Execution/exec_sysmon_1_ftp.evtx", 16513)
    assert e["@timestamp"] == "2019-05-12T17:20:49.443464Z"
    assert e["event"]["code"] == "1"
    assert e["event"]["module"] == "sysmon"
    assert e["event"]["category"] == ["process"] and e["event"]["type"] == ["start"]
    assert e["event"]["provider"] == "Microsoft-Windows-Sysmon"
    w = e["winlog"]
    assert w["channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert w["event_id"] == "1" and w["record_id"] == 16513
    assert w["provider_guid"] == "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"
    assert w["computer_name"] == "IEWIN7" and e["host"]["name"] == "IEWIN7"
    assert w["process"] == {"pid": 2012, "thread": {"id": 300}}
    assert w["user"]["identifier"] == "S-1-5-18"
    assert w["task"] == "Process Create (rule: ProcessCreate)"
    assert w["event_data"]["ProcessId"] == "2392"  # every item a string, as Winlogbeat stores it
    assert w["event_data"]["TerminalSessionId"] == "1"
    assert "RuleName" not in w["event_data"]  # empty values are left out
    assert e["log"]["level"] == "information"
    p = e["process"]
    assert p["executable"] == r"C:\Windows\System32\cmd.exe" and p["name"] == "cmd.exe"
    assert p["command_line"] == r"C:\Windows\system32\cmd.exe /C c:\Windows\system32\calc.exe"
    assert p["args"] == [r"C:\Windows\system32\cmd.exe", "/C", r"c:\Windows\system32\calc.exe"]
    assert p["args_count"] == 3
    assert p["pid"] == 2392
    assert p["entity_id"] == "{365ABB72-55F1-5CD8-0000-0010781C3300}"
    assert p["working_directory"] == "C:\\Users\\IEUser\\Downloads\\WinPwnage-master\\WinPwnage-master\\"
    assert p["parent"]["executable"] == r"C:\Windows\System32\ftp.exe" and p["parent"]["name"] == "ftp.exe"
    assert p["parent"]["pid"] == 3668
    assert (
        p["parent"]["command_line"]
        == '"C:\\Windows\\System32\\ftp.exe" -s:c:\\users\\ieuser\\appdata\\local\\temp\\ftp.txt'
    )
    assert p["pe"]["description"] == "Windows Command Processor"
    assert p["pe"]["product"] == "Microsoft® Windows® Operating System"
    assert p["pe"]["company"] == "Microsoft Corporation"
    assert p["pe"]["imphash"] == "ceefb55f764020cc5c5f8f23349ab163"
    assert p["hash"] == {
        "sha1": "ee8cbf12d87c4d388f09b4f69bed2e91682920b5",
        "md5": "ad7b9c14083b52bc532fba5948342b98",
        "sha256": "17f746d82695fa9b35493b41859d39d786d32b23a9d2e00f4011dec7a02402ae",
    }
    assert e["user"] == {"name": "IEUser", "domain": "IEWIN7"}


@needs_corpus
def test_sysmon_3_network_connection() -> None:
    e = _parsed("AutomatedTestingTools/PanacheSysmon_vs_AtomicRedTeam01.evtx", 3757)
    assert e["source"] == {"ip": "10.0.2.15", "port": 49727, "domain": "MSEDGEWIN10.home"}
    assert e["destination"] == {"ip": "172.217.17.132", "port": 80, "domain": "ams15s30-in-f4.1e100.net"}
    assert e["network"] == {"transport": "tcp", "protocol": "http", "direction": "egress", "type": "ipv4"}
    assert e["process"]["executable"] == r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
    assert e["rule"]["name"] == "Suspicious NetCon"
    assert e["winlog"]["event_data"]["Initiated"] == "true"


@needs_corpus
def test_sysmon_13_registry_value_set() -> None:
    e = _parsed("Defense Evasion/DE_UAC_Disabled_Sysmon_12_13.evtx", 18619)
    assert e["registry"] == {
        "path": r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\policies\system\EnableLUA",
        "hive": "HKLM",
        "key": r"SOFTWARE\Microsoft\Windows\CurrentVersion\policies\system",
        "value": "EnableLUA",
        "data": {"strings": ["DWORD (0x00000000)"]},
    }
    assert e["event"]["category"] == ["configuration", "registry"]
    assert e["process"]["executable"] == r"C:\Windows\system32\reg.exe"


@needs_corpus
def test_security_4624_logon() -> None:
    e = _parsed("Lateral Movement/LM_WMI_4624_4688_TargetHost.evtx", 563285)
    assert e["@timestamp"] == "2019-03-18T22:15:49.583102Z"
    assert e["event"]["code"] == "4624" and e["winlog"]["event_id"] == "4624"
    assert e["event"]["action"] == "logged-in"
    assert e["event"]["category"] == ["authentication"] and e["event"]["type"] == ["start"]
    assert e["event"]["outcome"] == "success"
    assert e["winlog"]["keywords"] == ["Audit Success"]
    assert e["winlog"]["task"] == "Logon"
    assert e["winlog"]["logon"] == {"id": "0x10fbcc", "type": "Network"}
    # a logon's user is the account that logged on (the target), as in Winlogbeat
    assert e["user"] == {
        "id": "S-1-5-21-1587066498-1489273250-1035260531-500",
        "name": "Administrator",
        "domain": "EXAMPLE",
    }
    assert e["source"] == {"ip": "10.0.2.17", "port": 49244}
    assert e["winlog"]["event_data"]["LogonType"] == "3"
    assert e["winlog"]["event_data"]["ImpersonationLevel"] == "%%1833"
    assert "user" not in e["winlog"]  # System/Security has no UserID here


@needs_corpus
def test_security_4624_ipv6_source() -> None:
    e = _parsed("Lateral Movement/LM_WMI_4624_4688_TargetHost.evtx", 563265)
    assert e["source"]["ip"] == "fe80::79bf:8ee2:433c:2567"
    assert e["user"]["name"] == "WIN-77LTAPHIQ1R$"


@needs_corpus
def test_security_4688_process_creation() -> None:
    e = _parsed("Lateral Movement/LM_WMI_4624_4688_TargetHost.evtx", 563298)
    assert e["event"]["action"] == "created-process"
    assert e["process"]["executable"] == r"C:\Windows\System32\wbem\WmiPrvSE.exe"
    assert e["process"]["name"] == "WmiPrvSE.exe"
    assert e["process"]["pid"] == 0xAE8  # NewProcessId "0xae8"
    assert e["process"]["parent"] == {"pid": 0x248}  # ProcessId "0x248" is the creator
    assert e["user"] == {"id": "S-1-5-18", "name": "WIN-77LTAPHIQ1R$", "domain": "EXAMPLE"}
    assert e["winlog"]["logon"]["id"] == "0x3e7"


@needs_corpus
def test_security_4688_with_command_line_and_parent_name() -> None:
    # the corpus's 4688s predate command-line auditing; add the items Windows 10 writes
    raw = copy.deepcopy(_records("Lateral Movement/LM_WMI_4624_4688_TargetHost.evtx")[563298].data)
    assert isinstance(raw, dict)
    raw["data"]["Event"]["EventData"].update(
        CommandLine=r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
        ParentProcessName=r"C:\Windows\System32\svchost.exe",
    )
    e = parse_evtx_record(raw, CTX)
    assert e["process"]["command_line"] == r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding"
    assert e["process"]["args"] == [r"C:\Windows\system32\wbem\wmiprvse.exe", "-secured", "-Embedding"]
    assert e["process"]["parent"]["executable"] == r"C:\Windows\System32\svchost.exe"
    assert e["process"]["parent"]["name"] == "svchost.exe"


@needs_corpus
def test_security_1102_user_data() -> None:
    e = _parsed("Defense Evasion/DE_1102_security_log_cleared.evtx", 452811)
    assert e["winlog"]["provider_name"] == "Microsoft-Windows-Eventlog"
    assert e["winlog"]["user_data"] == {
        "xml_name": "LogFileCleared",
        "SubjectUserSid": "S-1-5-21-1587066498-1489273250-1035260531-1106",
        "SubjectUserName": "user01",
        "SubjectDomainName": "EXAMPLE",
        "SubjectLogonId": "0x17dad",
    }
    assert "event_data" not in e["winlog"]
    assert e["user"]["name"] == "user01"
    assert e["event"]["action"] == "audit-log-cleared"


@needs_corpus
def test_system_7045_service_install() -> None:
    e = _parsed("Lateral Movement/LM_Remote_Service02_7045.evtx", 4480)
    assert e["winlog"]["channel"] == "System"
    assert e["winlog"]["provider_name"] == "Service Control Manager"
    assert e["winlog"]["event_data"]["ImagePath"] == "cmd.exe"
    # fields that ecs_windows maps for every Windows rule: ServiceName, AccountName
    assert e["service"]["name"] == "spoolfool"
    assert e["user"]["name"] == "LocalSystem"
    assert "module" not in e["event"]  # no Winlogbeat module for System: the source's module applies


@needs_corpus
def test_powershell_4104_script_block() -> None:
    e = _parsed("Credential Access/Powershell_4104_MiniDumpWriteDump_Lsass.evtx", 971)
    text = e["winlog"]["event_data"]["ScriptBlockText"]
    assert text.startswith("function Memory($path)\n{\n")  # Windows line endings made Unix
    assert "\r" not in text and "$WERNativeMethods.GetMethod('MiniDumpWriteDump', $Flags)" in text
    assert e["powershell"]["file"]["script_block_text"] == text
    assert e["powershell"]["sequence"] == 1 and e["powershell"]["total"] == 1
    assert e["powershell"]["file"]["script_block_id"] == e["winlog"]["event_data"]["ScriptBlockId"]
    assert e["winlog"]["channel"] == "Microsoft-Windows-PowerShell/Operational"
    assert e["winlog"]["user"]["identifier"] == "S-1-5-21-3461203602-4096304019-2269080069-1000"
    assert e["event"]["module"] == "powershell"


@needs_corpus
def test_powershell_classic_800_details() -> None:
    e = _parsed("Other/emotet/exec_emotet_ps_800_new-object.evtx", 787)
    assert e["winlog"]["channel"] == "Windows PowerShell"
    assert e["event"]["code"] == "800" and e["event"]["sequence"] == 23
    assert e["process"]["title"] == "ConsoleHost"
    assert e["process"]["command_line"] == r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
    assert e["powershell"]["process"]["executable_version"] == "5.1.19041.1"
    assert e["user"] == {"name": "Clippy", "domain": "DESKTOP-RIPCLIP"}
    data = e["winlog"]["event_data"]
    assert data["HostName"] == "ConsoleHost"
    assert data["param2"].startswith("\tDetailSequence=1\n")
    # the unnamed items, each on its own, for Sigma's `Data` field
    assert data["Data"] == [data["param1"], data["param2"], data["param3"]]
    assert data["param3"].startswith('CommandInvocation(New-Object): "New-Object"')
    # the script text beside the details holds "x=..." lines that must not become fields
    assert not any(k.startswith("$") for k in data)


@needs_corpus
def test_vietnamese_text_stays_intact() -> None:
    raw = copy.deepcopy(_records("Execution/exec_sysmon_1_ftp.evtx")[16513].data)
    assert isinstance(raw, dict)
    raw["data"]["Event"]["EventData"]["User"] = "SỞ-TTTT\\Nguyễn Văn Ánh"
    raw["data"]["Event"]["EventData"]["CommandLine"] = r'notepad.exe "C:\Báo cáo\tuần.txt"'
    e = parse_evtx_record(raw, CTX)
    assert e["user"] == {"name": "Nguyễn Văn Ánh", "domain": "SỞ-TTTT"}
    assert e["process"]["args"] == ["notepad.exe", r"C:\Báo cáo\tuần.txt"]


@needs_corpus
def test_etw_record_without_channel() -> None:
    e = _parsed("Credential Access/etw_rpc_zerologon.evtx", 4)
    assert "channel" not in e["winlog"]
    assert e["winlog"]["provider_name"] == "Microsoft-Windows-RPC"
    assert e["winlog"]["event_data"]["Endpoint"] == "lsasspirpc"


@needs_corpus
def test_qualified_event_id_and_named_event_data() -> None:
    e = _parsed("Credential Access/LsassSilentProcessExit_process_exit_monitor_3001_lsass.evtx", 32887)
    assert e["event"]["code"] == "3001"  # EventID with a Qualifiers attribute
    assert e["winlog"]["event_data"]["param1"] == r"C:\Windows\System32\lsass.exe"


@needs_corpus
def test_unnamed_data_items_become_params() -> None:
    rel = "Credential Access/MSSQL_multiple_failed_logon_EventID_18456.evtx"
    rid = next(iter(_records(rel)))
    e = _parsed(rel, rid)
    data = e["winlog"]["event_data"]
    assert data["param1"] == "sa"
    assert data["param2"] == " Reason: Password did not match that for the login provided."
    assert data["param3"] == " [CLIENT: 10.0.2.17]"
    assert data["Binary"].startswith("1848")


def _minimal(system: dict[str, Any]) -> dict[str, Any]:
    return {"event_record_id": 1, "timestamp": "2024-01-01T00:00:00Z", "data": {"Event": {"System": system}}}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("not a record", "expected a decoded EVTX record"),
        ({"event_record_id": 1, "data": {"Event": {"EventData": {}}}}, "no System element"),
        (_minimal({"Channel": "Security", "Computer": "PC01"}), "no System/EventID"),
        (_minimal({"EventID": "abc"}), "not a number"),
        ({"data": "{not json"}, "not JSON"),
    ],
)
def test_parse_error(record: Any, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_evtx_record(record, CTX)


def test_time_falls_back_to_record_header_and_is_utc() -> None:
    e = parse_evtx_record(_minimal({"EventID": 4, "Channel": "X"}), CTX)
    assert e["@timestamp"] == "2024-01-01T00:00:00.000000Z"
    e = parse_evtx_record(
        _minimal({"EventID": 4, "TimeCreated": {"#attributes": {"SystemTime": "2024-03-01T10:00:00+07:00"}}}),
        CTX,
    )
    assert e["@timestamp"] == "2024-03-01T03:00:00.000000Z"


def test_sysmon_dns_results_and_bad_addresses() -> None:
    system = {
        "EventID": 22,
        "Channel": "Microsoft-Windows-Sysmon/Operational",
        "TimeCreated": {"#attributes": {"SystemTime": "2024-01-01T00:00:00Z"}},
    }
    data = {
        "QueryName": "login.live.com",
        "Image": r"C:\x\a.exe",
        "SourceIp": "fe80::1%12",
        "QueryResults": "type:  5 login.msa.msidentity.com;::ffff:40.126.31.135;2603:1037::10;bogus;",
    }
    record = {"data": {"Event": {"System": system, "EventData": data}}}
    e = parse_evtx_record(record, CTX)
    assert e["dns"]["question"]["name"] == "login.live.com"
    assert e["dns"]["resolved_ip"] == ["40.126.31.135", "2603:1037::10"]
    assert e["dns"]["answers"][0] == {"type": "CNAME", "data": "login.msa.msidentity.com"}
    assert e["source"]["ip"] == "fe80::1"  # the zone index is not an address


# --- the reader ------------------------------------------------------------------------------
class ListSink:
    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.flushes = 0

    def handle(self, record: RawRecord) -> None:
        self.records.append(record)

    def flush(self) -> None:
        self.flushes += 1


SHARE_FILE = "Lateral Movement/LM_5145_Remote_FileCopy.evtx"


@needs_corpus
def test_reader_yields_every_record_with_stable_ids(tmp_path: Path) -> None:
    from evtx import PyEvtxParser

    src = CORPUS / SHARE_FILE
    expected = sum(1 for _ in PyEvtxParser(str(src)).records_json())
    reader = EvtxReader()
    first = list(reader.iter_records(src))
    assert len(first) == expected == reader.stats.records
    r = first[0]
    assert isinstance(r.data, dict) and "Event" in r.data["data"]
    system = r.data["data"]["Event"]["System"]
    assert r.id_key == f"evtx:{system['Computer']}:{system['Channel']}:{system['EventRecordID']}"
    assert r.fields == {"log": {"file": {"path": str(src)}}, "winlog": {"record_id": system["EventRecordID"]}}
    assert len({x.id_key for x in first}) == len(first)
    copy_path = tmp_path / "exported copy.evtx"
    shutil.copyfile(src, copy_path)
    again = list(EvtxReader().iter_records(copy_path))
    assert [x.id_key for x in again] == [x.id_key for x in first]
    assert again[0].fields["log"]["file"]["path"] == str(copy_path)


@needs_corpus
def test_reader_counts_a_corrupted_chunk_and_goes_on(tmp_path: Path) -> None:
    data = bytearray((CORPUS / SHARE_FILE).read_bytes())
    total = len(list(EvtxReader().iter_records(CORPUS / SHARE_FILE)))
    start = 0x1000 + 0x200  # inside the first chunk, past its header: its string table breaks
    data[start : start + 0x1E00] = bytes((i * 37 + 11) % 256 for i in range(0x1E00))
    broken = tmp_path / "broken.evtx"
    broken.write_bytes(bytes(data))
    reader = EvtxReader()
    records = list(reader.iter_records(broken))
    assert reader.stats.parser_errors >= 1
    assert 0 < len(records) < total
    assert len(records) + reader.stats.records_lost == total
    assert reader.stats.errors and str(broken) in reader.stats.errors[0]


def test_reader_names_a_file_that_is_not_evtx(tmp_path: Path) -> None:
    junk = tmp_path / "not-a-log.evtx"
    junk.write_bytes(b"hello " * 100)
    with pytest.raises(EvtxReadError, match=r"not-a-log\.evtx"):
        list(EvtxReader().iter_records(junk))
    with pytest.raises(EvtxReadError, match=r"missing\.evtx"):
        list(EvtxReader().iter_records(tmp_path / "missing.evtx"))


@needs_corpus
def test_ingest_paths_reads_globs_with_progress(tmp_path: Path) -> None:
    for name in ("a.evtx", "sub/b.evtx"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / "Execution/exec_sysmon_1_ftp.evtx", tmp_path / name)
    (tmp_path / "sub/junk.evtx").write_bytes(b"\0" * 10)
    sink = ListSink()
    lines: list[str] = []
    summary = ingest_paths([str(tmp_path / "**/*.evtx")], sink, lines.append, every=2)
    per_file = len(_records("Execution/exec_sysmon_1_ftp.evtx"))
    assert summary["files_total"] == 3 and summary["files_done"] == 3 and summary["files_read"] == 2
    assert summary["per_file"] == {
        str(tmp_path / "a.evtx"): per_file,
        str(tmp_path / "sub/b.evtx"): per_file,
        str(tmp_path / "sub/junk.evtx"): 0,
    }
    assert len(summary["unreadable"]) == 1 and "junk.evtx" in summary["unreadable"][0]
    assert summary["records"] == len(sink.records) == 2 * per_file and sink.flushes == 1
    done = [int(m[1]) for line in lines if (m := re.match(r"evtx: (\d+)/3 files, ([\d,]+) records", line))]
    assert len(done) == len(lines) and done == sorted(done) and done[-1] == 3
    assert lines[-1].startswith(f"evtx: 3/3 files, {2 * per_file:,} records, ")
    assert "records/s" in lines[-1] and str(tmp_path / "sub/junk.evtx") in lines[-1]


def test_expand_paths_reports_what_matched_nothing(tmp_path: Path) -> None:
    with pytest.raises(EvtxReadError, match=r"nothing\*\.evtx"):
        expand_paths([str(tmp_path / "nothing*.evtx")])
