"""Sigma log sources -> hcm-soc data, and Sigma field names -> ECS fields.

A `DataSource` says which events a Sigma log source means (`conditions`: a list of
alternatives, each a set of field = value(s) tests that must all hold; the alternatives are
OR-ed) and how the rule's field names map to the fields our parsers and collectors write
(`fields`; a field missing from the map is kept as written, or for Windows prefixed with
`winlog.event_data.` like Winlogbeat stores EventData items).

Log sources with no row here have no data in hcm-soc: rules for them are rejected when they
are compiled, never run silently against nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sigma.pipelines.common import windows_logsource_mapping

Condition = Mapping[str, Any]  # field -> value or list of values (any of them)


@dataclass(frozen=True, slots=True)
class DataSource:
    """One row: the Sigma log source it serves, our events, the field names."""

    name: str
    product: str | None
    category: str | None
    service: str | None
    conditions: tuple[Condition, ...]
    fields: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    unmapped_prefix: str = ""  # prefix for fields not in `fields` (Windows: winlog.event_data.)


#: where a Windows event's own strings are searched by keywords: `hcm.keywords` holds a copy of
#: every EventData and UserData value (`copy_to` in the events mapping), `message` the rendered
#: text a live collector may add
WINDOWS_KEYWORD_FIELDS = ("hcm.keywords", "message.caseless")


def keyword_fields(source: DataSource) -> tuple[str, ...]:
    """Where field-less (keyword) detections of `source` search. Linux logs keep their text in
    `message`, web/proxy events in the URL, user agent and referrer, Windows events in their
    EventData/UserData values (`WINDOWS_KEYWORD_FIELDS`); elsewhere every lower-cased string
    sub-field is searched (correct, but each such term expands to every string field, which is
    what made keyword rules the costliest SigmaHQ rules: docs/detection-cost.md)."""
    if source.product == "windows":
        return WINDOWS_KEYWORD_FIELDS
    if source.name == "linux" or source.name.startswith("linux/"):
        return ("message.caseless",)
    if source.name in ("webserver", "proxy"):
        return (
            "url.original.caseless",
            "url.full.caseless",
            "user_agent.original.caseless",
            "http.request.referrer.caseless",
        )
    return ("*.caseless",)


SYSMON = "Microsoft-Windows-Sysmon/Operational"
SECURITY = "Security"
PS_OPERATIONAL = ("Microsoft-Windows-PowerShell/Operational", "PowerShellCore/Operational")
PS_CLASSIC = "Windows PowerShell"
KERNEL_FILE = "Microsoft-Windows-Kernel-File"
#: Windows services SigmaHQ uses that pySigma's windows_logsource_mapping lacks
EXTRA_WINDOWS_SERVICES = {
    "iis-configuration": "Microsoft-IIS-Configuration/Operational",
    "ldap": "Microsoft-Windows-LDAP-Client/Debug",
    "smbserver-connectivity": "Microsoft-Windows-SMBServer/Connectivity",
}


def _sysmon(*ids: int) -> dict[str, Any]:
    return {"winlog.channel": SYSMON, "winlog.event_id": list(ids) if len(ids) > 1 else ids[0]}


def _security(*ids: int) -> dict[str, Any]:
    return {"winlog.channel": SECURITY, "winlog.event_id": list(ids) if len(ids) > 1 else ids[0]}


#: Windows categories -> the events that carry them: Sysmon, and Security where Windows logs the
#: same thing itself (4688 process creation, 4689 termination, 5156 allowed connections)
WINDOWS_CATEGORIES: dict[str, tuple[Condition, ...]] = {
    "process_creation": (_sysmon(1), _security(4688)),
    "file_change": (_sysmon(2),),
    "network_connection": (_sysmon(3), _security(5156)),
    "sysmon_status": (_sysmon(4, 16),),
    "process_termination": (_sysmon(5), _security(4689)),
    "driver_load": (_sysmon(6),),
    "image_load": (_sysmon(7),),
    "create_remote_thread": (_sysmon(8),),
    "raw_access_thread": (_sysmon(9),),
    "process_access": (_sysmon(10),),
    "file_event": (_sysmon(11),),
    "registry_add": (_sysmon(12),),
    "registry_delete": (_sysmon(12),),
    "registry_set": (_sysmon(13),),
    "registry_rename": (_sysmon(14),),
    "registry_event": (_sysmon(12, 13, 14),),
    "create_stream_hash": (_sysmon(15),),
    "pipe_created": (_sysmon(17, 18),),
    "wmi_event": (_sysmon(19, 20, 21),),
    "dns_query": (_sysmon(22),),
    "file_delete": (_sysmon(23, 26),),
    "clipboard_capture": (_sysmon(24),),
    "process_tampering": (_sysmon(25),),
    "file_block_executable": (_sysmon(27),),
    "file_block_shredding": (_sysmon(28),),
    "file_executable_detected": (_sysmon(29),),
    "sysmon_error": (_sysmon(255),),
    # from the Microsoft-Windows-Kernel-File ETW provider, as SigmaHQ's log-source docs say
    "file_access": ({"winlog.provider_name": KERNEL_FILE},),
    "file_rename": ({"winlog.provider_name": KERNEL_FILE},),
    "ps_module": ({"winlog.channel": list(PS_OPERATIONAL), "winlog.event_id": 4103},),
    "ps_script": ({"winlog.channel": list(PS_OPERATIONAL), "winlog.event_id": 4104},),
    "ps_classic_start": ({"winlog.channel": PS_CLASSIC, "winlog.event_id": 400},),
    "ps_classic_provider_start": ({"winlog.channel": PS_CLASSIC, "winlog.event_id": 600},),
    "ps_classic_script": ({"winlog.channel": PS_CLASSIC, "winlog.event_id": 800},),
}

#: Sigma (Sysmon/Security EventData) names -> the ECS fields our EVTX parser fills, as pySigma's
#: `ecs_windows` pipeline maps them, with its pitfalls fixed: images map to the plain ECS field
#: (the compiler adds `.caseless` for case-insensitive matching) and ParentProcessName (a full
#: path in 4688) maps to the parent's executable so `|endswith: '\\x.exe'` works.
WINDOWS_FIELDS: dict[str, str | tuple[str, ...]] = {
    "EventID": "winlog.event_id",
    "Channel": "winlog.channel",
    "Provider_Name": "winlog.provider_name",
    "ComputerName": "winlog.computer_name",
    "FileName": "file.path",
    "ProcessGuid": "process.entity_id",
    "ProcessId": "process.pid",
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "CurrentDirectory": "process.working_directory",
    "ParentProcessGuid": "process.parent.entity_id",
    "ParentProcessId": "process.parent.pid",
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "OriginalFileName": "process.pe.original_file_name",
    "Product": "process.pe.product",
    "Company": "process.pe.company",
    "Description": "process.pe.description",
    "FileVersion": "process.pe.file_version",
    "TargetFilename": "file.path",
    "SourceIp": "source.ip",
    "SourceHostname": "source.domain",
    "SourcePort": "source.port",
    "DestinationIp": "destination.ip",
    "DestinationHostname": "destination.domain",
    "DestinationPort": "destination.port",
    "DestinationPortName": "network.protocol",
    "Protocol": "network.transport",
    "ImageLoaded": "file.path",
    "Signed": "file.code_signature.signed",
    "Signature": "file.code_signature.subject_name",
    "SignatureStatus": "file.code_signature.status",
    "Imphash": "file.pe.imphash",
    "SourceProcessGuid": "process.entity_id",
    "SourceProcessId": "process.pid",
    "SourceImage": "process.executable",
    "Device": "file.path",
    "SourceThreadId": "process.thread.id",
    "TargetObject": "registry.path",
    "PipeName": "file.name",
    "QueryName": "dns.question.name",
    "QueryStatus": "sysmon.dns.status",
    "IsExecutable": "sysmon.file.is_executable",
    "Archived": "sysmon.file.archived",
    "CommandName": "powershell.command.name",
    "CommandPath": "powershell.command.path",
    "CommandType": "powershell.command.type",
    "HostApplication": "process.command_line",
    "HostId": "process.entity_id",
    "HostName": "process.title",
    "HostVersion": "powershell.process.executable_version",
    "EngineVersion": "powershell.engine.version",
    "NewEngineState": "powershell.engine.new_state",
    "PipelineId": "powershell.pipeline_id",
    "PreviousEngineState": "powershell.engine.previous_state",
    "RunspaceId": "powershell.runspace_id",
    "ScriptName": "file.path",
    "SequenceNumber": "event.sequence",
    "NewProviderState": "powershell.provider.new_state",
    "ProviderName": "powershell.provider.name",
    "ScriptBlockText": "powershell.file.script_block_text",
    "ScriptBlockId": "powershell.file.script_block_id",
    "AccountDomain": "user.domain",
    "AccountName": "user.name",
    "Application": "process.executable",
    "ClientAddress": "source.ip",
    "ClientName": "source.domain",
    "DestAddress": "destination.ip",
    "DestPort": "destination.port",
    "IpAddress": "source.ip",
    "IpPort": "source.port",
    "NewProcessId": "process.pid",
    "NewProcessName": "process.executable",
    "ParentProcessName": "process.parent.executable",
    "ProcessName": "process.executable",
    "SourceAddress": "source.ip",
    "WorkstationName": "source.domain",
    "SubjectUserName": "user.name",
    "SubjectDomainName": "user.domain",
    "SubjectUserSid": "user.id",
    "SubjectLogonId": "winlog.logon.id",
    "TargetLogonId": "winlog.logon.id",
    "ServiceName": "service.name",
}

#: fields whose meaning differs by log source (as in ecs_windows' variable mappings)
WINDOWS_FIELDS_BY_CATEGORY: dict[str, dict[str, str]] = {
    "image_load": {
        "OriginalFileName": "file.pe.original_file_name",
        "Product": "file.pe.product",
        "Company": "file.pe.company",
        "Description": "file.pe.description",
        "FileVersion": "file.pe.file_version",
    },
    "driver_load": {"Signature": "file.code_signature.subject_name"},
    "sysmon_error": {"Description": "winlog.event_data.Description"},
    "network_connection": {"Initiated": "network.direction"},
    "ps_classic_start": {"CommandLine": "powershell.command.value"},
    "ps_classic_provider_start": {"CommandLine": "powershell.command.value"},
    "ps_classic_script": {"CommandLine": "powershell.command.value"},
    # Kernel-File events carry the file as FileName, which is no ECS field there
    "file_access": {"FileName": "winlog.event_data.FileName"},
    "file_rename": {"FileName": "winlog.event_data.FileName"},
}
WINDOWS_FIELDS_BY_SERVICE: dict[str, dict[str, str]] = {
    "powershell-classic": {"CommandLine": "powershell.command.value"},
}

#: Linux: our syslog parser (event.module system) and the programs that write the auth log
AUTH_PROGRAMS = (
    "sshd",
    "sshd-session",  # OpenSSH 9.8+ logs logins from this program
    "sudo",
    "su",
    "login",
    "passwd",
    "chpasswd",
    "useradd",
    "userdel",
    "usermod",
    "groupadd",
    "groupdel",
    "groupmod",
    "gpasswd",
    "chage",
    "systemd-logind",
    "polkitd",
    "pkexec",
)
LINUX_FIELDS: dict[str, str | tuple[str, ...]] = {
    "User": "user.name",
    "user": "user.name",
    "pam_user": "user.name",
    "pam_rhost": "source.address",
    "rhost": "source.address",
    "Hostname": "host.name",
    "ProcessName": "process.name",
    "CommandLine": "process.command_line",
}

#: W3C / IIS-style webserver and proxy names used by SigmaHQ -> ECS as our web parser writes it
WEB_FIELDS: dict[str, str | tuple[str, ...]] = {
    "c-ip": "source.ip",
    "clientip": "source.ip",
    "cs-uri-query": "url.query",
    "cs-uri-stem": "url.path",
    "cs-uri": "url.original",
    "c-uri": "url.original",
    "c-uri-query": "url.query",
    "c-uri-stem": "url.path",
    "c-uri-extension": "url.extension",
    "cs-method": "http.request.method",
    "sc-status": "http.response.status_code",
    "c-useragent": "user_agent.original",
    "cs-user-agent": "user_agent.original",
    "cs-referer": "http.request.referrer",
    "cs-referrer": "http.request.referrer",
    "cs-host": "url.domain",
    "r-dns": "url.domain",
    "cs-version": "http.version",
    "cs-username": "user.name",
    "cs-bytes": "http.request.bytes",
    "sc-bytes": "http.response.bytes",
    "cs-cookie": "http.request.cookie",
    "s-ip": "destination.ip",
    "dst_ip": "destination.ip",
    "dst_port": "destination.port",
    "src_ip": "source.ip",
}

#: firewall logs (our UFW/iptables events) with the generic names SigmaHQ firewall rules use
FIREWALL_FIELDS: dict[str, str | tuple[str, ...]] = {
    "src_ip": "source.ip",
    "src_port": "source.port",
    "dst_ip": "destination.ip",
    "dst_port": "destination.port",
    "action": "event.action",
    "protocol": "network.transport",
    "proto": "network.transport",
    "rule": "rule.name",
    "interface": "observer.ingress.interface.name",
}

#: DNS (category dns and zeek dns) -> the network collector's network.dns records
DNS_FIELDS: dict[str, str | tuple[str, ...]] = {
    "query": "dns.question.name",
    "QueryName": "dns.question.name",
    "answer": "dns.answers.data",
    "answers": "dns.answers.data",
    "record_type": "dns.question.type",
    "qtype_name": "dns.question.type",
    "parent_domain": "dns.question.registered_domain",
    "rcode_name": "dns.response_code",
    "response_code": "dns.response_code",
    "question_length": "labels.dns.query_length",
    "src_ip": "source.ip",
    "dst_ip": "destination.ip",
    "src_port": "source.port",
    "dst_port": "destination.port",
}

#: zeek conn/http/ssl field names, as pySigma's ecs_zeek_beats maps them (the subset that exists
#: in the network collector's flow/http/tls records)
ZEEK_FIELDS: dict[str, str | tuple[str, ...]] = {
    "id.orig_h": "source.ip",
    "id.orig_p": "source.port",
    "id.resp_h": "destination.ip",
    "id.resp_p": "destination.port",
    "src_ip": "source.ip",
    "src_port": "source.port",
    "dst_ip": "destination.ip",
    "dst_port": "destination.port",
    "proto": "network.transport",
    "service": "network.protocol",
    "duration": "event.duration",
    "orig_bytes": "source.bytes",
    "resp_bytes": "destination.bytes",
    "orig_pkts": "source.packets",
    "resp_pkts": "destination.packets",
    "conn_state": "zeek.connection.state",
    "history": "zeek.connection.history",
    "method": "http.request.method",
    "host": "url.domain",
    "uri": "url.original",
    "referrer": "http.request.referrer",
    "user_agent": "user_agent.original",
    "status_code": "http.response.status_code",
    "request_body_len": "http.request.body.bytes",
    "response_body_len": "http.response.body.bytes",
    "server_name": "tls.client.server_name",
    "version": "tls.version",
    "cipher": "tls.cipher",
    "ja3": "tls.client.ja3",
    "ja3s": "tls.server.ja3s",
    "subject": "tls.server.subject",
    "issuer": "tls.server.issuer",
    "validation_status": "tls.server.validation_status",
    **DNS_FIELDS,
}

_LINUX = {"event.module": "system"}


def _build() -> tuple[DataSource, ...]:
    rows: list[DataSource] = []
    for service, channel in {**windows_logsource_mapping, **EXTRA_WINDOWS_SERVICES}.items():
        rows.append(
            DataSource(
                f"windows/{service}",
                "windows",
                None,
                service,
                ({"winlog.channel": channel},),
                {**WINDOWS_FIELDS, **WINDOWS_FIELDS_BY_SERVICE.get(service, {})},
                "winlog.event_data.",
            )
        )
    for category, conditions in WINDOWS_CATEGORIES.items():
        rows.append(
            DataSource(
                f"windows/{category}",
                "windows",
                category,
                None,
                conditions,
                {**WINDOWS_FIELDS, **WINDOWS_FIELDS_BY_CATEGORY.get(category, {})},
                "winlog.event_data.",
            )
        )
    rows += [
        DataSource(
            "windows",
            "windows",
            None,
            None,
            ({"winlog.channel|exists": True},),
            WINDOWS_FIELDS,
            "winlog.event_data.",
        ),
        DataSource("linux", "linux", None, None, (_LINUX,), LINUX_FIELDS),
        DataSource("linux/syslog", "linux", None, "syslog", (_LINUX,), LINUX_FIELDS),
        DataSource(
            "linux/auth",
            "linux",
            None,
            "auth",
            ({**_LINUX, "process.name": list(AUTH_PROGRAMS)},),
            LINUX_FIELDS,
        ),
        DataSource(
            "linux/sshd",
            "linux",
            None,
            "sshd",
            ({**_LINUX, "process.name": ["sshd", "sshd-session"]},),
            LINUX_FIELDS,
        ),
        DataSource("linux/sudo", "linux", None, "sudo", ({**_LINUX, "process.name": "sudo"},), LINUX_FIELDS),
        DataSource(
            "linux/cron",
            "linux",
            None,
            "cron",
            ({**_LINUX, "process.name": ["cron", "crond"]},),
            LINUX_FIELDS,
        ),
        DataSource(
            "webserver", None, "webserver", None, ({"event.module": ["nginx", "apache"]},), WEB_FIELDS
        ),
        DataSource("proxy", None, "proxy", None, ({"event.dataset": "network.http"},), WEB_FIELDS),
        DataSource(
            "firewall",
            None,
            "firewall",
            None,
            ({**_LINUX, "process.name": "kernel", "event.category": "network"},),
            FIREWALL_FIELDS,
        ),
        DataSource("dns", None, "dns", None, ({"event.dataset": "network.dns"},), DNS_FIELDS),
        DataSource("zeek/conn", "zeek", None, "conn", ({"event.dataset": "network.flow"},), ZEEK_FIELDS),
        DataSource("zeek/dns", "zeek", None, "dns", ({"event.dataset": "network.dns"},), ZEEK_FIELDS),
        DataSource("zeek/http", "zeek", None, "http", ({"event.dataset": "network.http"},), ZEEK_FIELDS),
        DataSource("zeek/ssl", "zeek", None, "ssl", ({"event.dataset": "network.tls"},), ZEEK_FIELDS),
    ]
    return tuple(rows)


DATA_SOURCES: tuple[DataSource, ...] = _build()


def find_source(product: str | None, category: str | None, service: str | None) -> DataSource | None:
    """The row for a rule's log source, or None when hcm-soc has no data for it.

    A row matches when each of its set parts equals the rule's; the rule may say more (a
    `product: nginx, category: webserver` rule is a webserver rule). The most specific row wins.
    """
    product, category, service = (x.lower() if x else None for x in (product, category, service))
    best: DataSource | None = None
    best_score = -1
    for row in DATA_SOURCES:
        parts = ((row.product, product), (row.category, category), (row.service, service))
        if any(want is not None and want != have for want, have in parts):
            continue
        # a rule part that the row leaves open must not be one that narrows to data we lack:
        # product=linux + category=process_creation is not "all linux syslog"
        if row.category is None and category is not None:
            continue
        if row.service is None and service is not None and row.product is not None:
            continue
        score = sum(want is not None for want, _ in parts)
        if score > best_score:
            best, best_score = row, score
    return best
