"""The data behind the EVTX parser: which EventData/UserData item becomes which ECS field,
and how Winlogbeat names and classifies each event.

Everything here is a table, read by `hcm_soc.parsers.evtx`. A field rule is
`(item name, ECS field, converter name)`; converters are the small functions in
`evtx.py` (`str`, `long`, `ip`, `basename`, …). Rules never overwrite a field
that an earlier rule set, so the most specific table comes first: the rules of
the module (Sysmon, Security, PowerShell) for the event id (or, when the id has
no table, the module's default rules), then `ECS_WINDOWS_RULES`, which mirrors
what pySigma's `ecs_windows` pipeline queries so that a SigmaHQ rule finds its
field on any provider.

Sources: Winlogbeat 8's `sysmon`, `security` and `powershell` module pipelines
(field names, event.category/type/action) and its default Windows metadata
(level, opcode and keyword names used when the provider's manifest is not at hand).
"""

from __future__ import annotations

from typing import Final

#: (EventData/UserData item, ECS field, converter)
FieldRule = tuple[str, str, str]
#: (event.action, event.category, event.type)
EventMeta = tuple[str, tuple[str, ...], tuple[str, ...]]

#: Winlogbeat's names for System/Level when the provider's manifest is unavailable
# fmt: off
LEVELS: Final[dict[int, str]] = {
    0: "information", 1: "critical", 2: "error", 3: "warning", 4: "information", 5: "verbose",
}
# fmt: on
# fmt: off
OPCODES: Final[dict[int, str]] = {
    0: "Info", 1: "Start", 2: "Stop", 3: "DCStart", 4: "DCStop", 5: "Extension", 6: "Reply",
    7: "Resume", 8: "Suspend", 9: "Send",
}
# fmt: on
#: the standard keyword bits (winmeta.xml); provider-specific bits have no name without the manifest
KEYWORDS: Final[dict[int, str]] = {
    0x1000000000000: "Response Time",
    0x4000000000000: "WDI Diag",
    0x8000000000000: "SQM",
    0x10000000000000: "Audit Failure",
    0x20000000000000: "Audit Success",
    0x40000000000000: "Correlation Hint",
    0x80000000000000: "Classic",
}

#: channel -> Winlogbeat module whose processing applies
CHANNEL_MODULES: Final[dict[str, str]] = {
    "Microsoft-Windows-Sysmon/Operational": "sysmon",
    "Security": "security",
    "Microsoft-Windows-PowerShell/Operational": "powershell",
    "Windows PowerShell": "powershell",
    "PowerShellCore/Operational": "powershell",
}

# fmt: off
LOGON_TYPES: Final[dict[str, str]] = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service", "7": "Unlock",
    "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive",
    "11": "CachedInteractive", "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}
# fmt: on


def _path(item: str, prefix: str) -> tuple[FieldRule, ...]:
    """A Windows path item as ECS `<prefix>.path/name/extension/directory`."""
    return (
        (item, f"{prefix}.path", "str"),
        (item, f"{prefix}.name", "basename"),
        (item, f"{prefix}.extension", "extension"),
        (item, f"{prefix}.directory", "dirname"),
    )


def _exe(item: str, prefix: str) -> tuple[FieldRule, ...]:
    """A process image item as ECS `<prefix>.executable/name`."""
    return ((item, f"{prefix}.executable", "str"), (item, f"{prefix}.name", "basename"))


def _pe(prefix: str) -> tuple[FieldRule, ...]:
    return (
        ("OriginalFileName", f"{prefix}.pe.original_file_name", "str"),
        ("Description", f"{prefix}.pe.description", "str"),
        ("Product", f"{prefix}.pe.product", "str"),
        ("Company", f"{prefix}.pe.company", "str"),
        ("FileVersion", f"{prefix}.pe.file_version", "str"),
        ("Hashes", f"{prefix}.hash", "hashes"),
        ("Hashes", f"{prefix}.pe.imphash", "imphash"),
    )


_SIGNATURE: Final = (
    ("Signed", "file.code_signature.signed", "bool"),
    ("Signature", "file.code_signature.subject_name", "str"),
    ("SignatureStatus", "file.code_signature.status", "str"),
)
_FILE_DELETE: Final = (
    *_path("TargetFilename", "file"),
    ("Hashes", "file.hash", "hashes"),
    ("IsExecutable", "sysmon.file.is_executable", "bool"),
    ("Archived", "sysmon.file.archived", "bool"),
)
_REGISTRY: Final = (
    ("TargetObject", "registry", "registry"),
    ("Details", "registry.data.strings", "list"),
)

# --- Sysmon -------------------------------------------------------------------------------
SYSMON_COMMON: Final[tuple[FieldRule, ...]] = (
    ("ProcessGuid", "process.entity_id", "guid"),
    ("ProcessId", "process.pid", "long"),
    *_exe("Image", "process"),
    ("User", "user", "domain_user"),
    ("RuleName", "rule.name", "str"),
)

_SYSMON_RULES: Final[dict[int, tuple[FieldRule, ...]]] = {
    1: (
        ("CommandLine", "process.command_line", "str"),
        ("CommandLine", "process.args", "args"),
        ("CurrentDirectory", "process.working_directory", "str"),
        ("ParentProcessGuid", "process.parent.entity_id", "guid"),
        ("ParentProcessId", "process.parent.pid", "long"),
        *_exe("ParentImage", "process.parent"),
        ("ParentCommandLine", "process.parent.command_line", "str"),
        ("ParentCommandLine", "process.parent.args", "args"),
        *_pe("process"),
    ),
    2: _path("TargetFilename", "file"),
    3: (
        ("SourceIp", "source.ip", "ip"),
        ("SourcePort", "source.port", "port"),
        ("SourceHostname", "source.domain", "str"),
        ("DestinationIp", "destination.ip", "ip"),
        ("DestinationPort", "destination.port", "port"),
        ("DestinationHostname", "destination.domain", "str"),
        ("Protocol", "network.transport", "lower"),
        ("DestinationPortName", "network.protocol", "lower"),
        ("Initiated", "network.direction", "direction"),
        ("SourceIsIpv6", "network.type", "ip_version"),
    ),
    6: (*_path("ImageLoaded", "file"), ("Hashes", "file.hash", "hashes"), *_SIGNATURE),
    7: (*_path("ImageLoaded", "file"), *_pe("file"), *_SIGNATURE),
    8: (
        ("SourceProcessGuid", "process.entity_id", "guid"),
        ("SourceProcessId", "process.pid", "long"),
        *_exe("SourceImage", "process"),
    ),
    9: (("Device", "file.path", "str"),),
    10: (
        ("SourceProcessGUID", "process.entity_id", "guid"),
        ("SourceProcessId", "process.pid", "long"),
        ("SourceThreadId", "process.thread.id", "long"),
        *_exe("SourceImage", "process"),
    ),
    11: _path("TargetFilename", "file"),
    12: (("TargetObject", "registry", "registry_key"),),
    13: _REGISTRY,
    14: _REGISTRY,
    15: (*_path("TargetFilename", "file"), ("Hash", "file.hash", "hashes")),
    17: (("PipeName", "file.name", "str"),),
    18: (("PipeName", "file.name", "str"),),
    22: (
        ("QueryName", "dns.question.name", "str"),
        ("QueryStatus", "sysmon.dns.status", "str"),
        ("QueryResults", "dns", "dns_results"),
    ),
    23: _FILE_DELETE,
    26: _FILE_DELETE,
}
SYSMON_RULES: Final[dict[int, tuple[FieldRule, ...]]] = {
    eid: (*rules, *SYSMON_COMMON) for eid, rules in _SYSMON_RULES.items()
}

#: event.action follows the Sysmon task names, as Winlogbeat renders them
SYSMON_META: Final[dict[int, EventMeta]] = {
    1: ("Process Create (rule: ProcessCreate)", ("process",), ("start",)),
    2: ("File creation time changed (rule: FileCreateTime)", ("file",), ("change",)),
    3: (
        "Network connection detected (rule: NetworkConnect)",
        ("network",),
        ("start", "connection", "protocol"),
    ),
    4: ("Sysmon service state changed", ("process",), ("change",)),
    5: ("Process terminated (rule: ProcessTerminate)", ("process",), ("end",)),
    6: ("Driver loaded (rule: DriverLoad)", ("driver",), ("start",)),
    7: ("Image loaded (rule: ImageLoad)", ("process",), ("change",)),
    8: ("CreateRemoteThread detected (rule: CreateRemoteThread)", ("process",), ("change",)),
    9: ("RawAccessRead detected (rule: RawAccessRead)", ("process",), ("access",)),
    10: ("Process accessed (rule: ProcessAccess)", ("process",), ("access",)),
    11: ("File created (rule: FileCreate)", ("file",), ("creation",)),
    12: (
        "Registry object added or deleted (rule: RegistryEvent)",
        ("configuration", "registry"),
        ("change",),
    ),
    13: ("Registry value set (rule: RegistryEvent)", ("configuration", "registry"), ("change",)),
    14: ("Registry object renamed (rule: RegistryEvent)", ("configuration", "registry"), ("change",)),
    15: ("File stream created (rule: FileCreateStreamHash)", ("file",), ("creation",)),
    16: ("Sysmon config state changed", ("configuration",), ("change",)),
    17: ("Pipe Created (rule: PipeEvent)", ("file",), ("creation",)),
    18: ("Pipe Connected (rule: PipeEvent)", ("file",), ("access",)),
    19: ("WmiEventFilter activity detected (rule: WmiEvent)", ("process",), ("change",)),
    20: ("WmiEventConsumer activity detected (rule: WmiEvent)", ("process",), ("change",)),
    21: ("WmiEventConsumerToFilter activity detected (rule: WmiEvent)", ("process",), ("change",)),
    22: ("Dns query (rule: DnsQuery)", ("network",), ("connection", "protocol", "info")),
    23: ("File Delete archived (rule: FileDelete)", ("file",), ("deletion",)),
    24: ("Clipboard changed (rule: ClipboardChange)", ("process",), ("change",)),
    25: ("Process Tampering (rule: ProcessTampering)", ("process",), ("change",)),
    26: ("File Delete logged (rule: FileDeleteDetected)", ("file",), ("deletion",)),
    27: ("File Block Executable (rule: FileBlockExecutable)", ("file",), ("denied",)),
    28: ("File Block Shredding (rule: FileBlockShredding)", ("file",), ("denied",)),
    255: ("Error report", ("process",), ("error",)),
}

# --- Security -----------------------------------------------------------------------------
_SUBJECT: Final = (
    ("SubjectUserSid", "user.id", "str"),
    ("SubjectUserName", "user.name", "str"),
    ("SubjectDomainName", "user.domain", "str"),
    ("SubjectLogonId", "winlog.logon.id", "str"),
)
_TARGET_AS_USER: Final = (
    ("TargetUserSid", "user.id", "str"),
    ("TargetSid", "user.id", "str"),
    ("TargetUserName", "user.name", "str"),
    ("TargetDomainName", "user.domain", "str"),
)
_TARGET_AS_TARGET: Final = (
    ("TargetUserSid", "user.target.id", "str"),
    ("TargetSid", "user.target.id", "str"),
    ("TargetUserName", "user.target.name", "str"),
    ("TargetDomainName", "user.target.domain", "str"),
)
_GROUP: Final = (
    ("TargetSid", "group.id", "str"),
    ("TargetUserName", "group.name", "str"),
    ("TargetDomainName", "group.domain", "str"),
    ("MemberSid", "user.target.id", "str"),
    ("MemberName", "user.target.name", "str"),
    *_SUBJECT,
)
_SOURCE: Final = (
    ("IpAddress", "source.ip", "ip"),
    ("IpPort", "source.port", "port"),
    ("WorkstationName", "source.domain", "str"),
)
_LOGON: Final = (
    *_TARGET_AS_USER,
    ("TargetLogonId", "winlog.logon.id", "str"),
    ("LogonType", "winlog.logon.type", "logon_type"),
    *_SOURCE,
    *_exe("ProcessName", "process"),
    ("ProcessId", "process.pid", "long"),
)
_KERBEROS: Final = (
    ("TargetUserName", "user.name", "str"),
    ("TargetDomainName", "user.domain", "str"),
    ("TargetSid", "user.id", "str"),
    ("ServiceName", "service.name", "str"),
    *_SOURCE,
)
_WFP: Final = (
    *_exe("Application", "process"),
    ("ProcessID", "process.pid", "long"),
    ("SourceAddress", "source.ip", "ip"),
    ("SourcePort", "source.port", "port"),
    ("DestAddress", "destination.ip", "ip"),
    ("DestPort", "destination.port", "port"),
    ("Protocol", "network.iana_number", "str"),
)
_SHARE: Final = (*_SUBJECT, *_SOURCE, ("RelativeTargetName", "file.path", "str"))
_ACCOUNT: Final = (*_SUBJECT, *_TARGET_AS_TARGET)

SECURITY_RULES: Final[dict[int, tuple[FieldRule, ...]]] = {
    **dict.fromkeys((4624, 4625, 4634, 4647), _LOGON),
    4648: (
        *_SUBJECT,
        *_TARGET_AS_TARGET,
        *_SOURCE,
        *_exe("ProcessName", "process"),
        ("ProcessId", "process.pid", "long"),
    ),
    4688: (
        *_exe("NewProcessName", "process"),
        ("NewProcessId", "process.pid", "long"),
        ("CommandLine", "process.command_line", "str"),
        ("CommandLine", "process.args", "args"),
        *_exe("ParentProcessName", "process.parent"),
        ("ProcessId", "process.parent.pid", "long"),
        *_SUBJECT,
        *_TARGET_AS_TARGET,
    ),
    4689: (*_exe("ProcessName", "process"), ("ProcessId", "process.pid", "long"), *_SUBJECT),
    4697: (*_SUBJECT, ("ServiceName", "service.name", "str"), ("ServiceType", "service.type", "str")),
    **dict.fromkeys(
        (
            4727,
            4728,
            4729,
            4730,
            4731,
            4732,
            4733,
            4734,
            4735,
            4737,
            4754,
            4755,
            4756,
            4757,
            4758,
            4798,
            4799,
        ),
        _GROUP,
    ),
    **dict.fromkeys((4768, 4769, 4770, 4771), _KERBEROS),
    4776: (("TargetUserName", "user.name", "str"), ("Workstation", "source.domain", "str")),
    **dict.fromkeys((5140, 5142, 5143, 5144, 5145), _SHARE),
    **dict.fromkeys((5156, 5157, 5158), _WFP),
}

#: Security events without a table of their own: the subject is the acting user
#: (Winlogbeat's copySubjectUser), the target the account acted on
SECURITY_COMMON: Final[tuple[FieldRule, ...]] = (*_ACCOUNT, *_exe("ProcessName", "process"))

SECURITY_META: Final[dict[int, EventMeta]] = {
    1100: ("logging-service-shutdown", ("process",), ("end",)),
    1102: ("audit-log-cleared", ("iam",), ("admin", "change")),
    1104: ("logging-full", ("process",), ("info",)),
    4624: ("logged-in", ("authentication",), ("start",)),
    4625: ("logon-failed", ("authentication",), ("start",)),
    4634: ("logged-out", ("authentication",), ("end",)),
    4647: ("logged-out", ("authentication",), ("end",)),
    4648: ("logged-in-explicit", ("authentication",), ("start",)),
    4656: ("object-handle-requested", ("file",), ("access",)),
    4658: ("object-handle-closed", ("file",), ("access",)),
    4661: ("object-handle-requested", ("iam",), ("access",)),
    4662: ("object-operation-performed", ("iam",), ("access",)),
    4663: ("object-access-attempted", ("file",), ("access",)),
    4672: ("logged-in-special", ("iam",), ("admin",)),
    4673: ("privileged-service-called", ("iam",), ("admin",)),
    4688: ("created-process", ("process",), ("start",)),
    4689: ("exited-process", ("process",), ("end",)),
    4697: ("service-installed", ("iam", "configuration"), ("admin", "change")),
    4698: ("scheduled-task-created", ("iam", "configuration"), ("creation", "admin")),
    4699: ("scheduled-task-deleted", ("iam", "configuration"), ("deletion", "admin")),
    4700: ("scheduled-task-enabled", ("iam", "configuration"), ("change", "admin")),
    4701: ("scheduled-task-disabled", ("iam", "configuration"), ("change", "admin")),
    4702: ("scheduled-task-updated", ("iam", "configuration"), ("change", "admin")),
    4703: ("token-right-adjusted", ("iam",), ("admin", "change")),
    4719: ("changed-audit-config", ("iam", "configuration"), ("change",)),
    4720: ("added-user-account", ("iam",), ("user", "creation")),
    4722: ("enabled-user-account", ("iam",), ("user", "change")),
    4723: ("changed-password", ("iam",), ("user", "change")),
    4724: ("reset-password", ("iam",), ("user", "change")),
    4725: ("disabled-user-account", ("iam",), ("user", "change")),
    4726: ("deleted-user-account", ("iam",), ("user", "deletion")),
    4727: ("added-group-account", ("iam",), ("group", "creation")),
    4728: ("added-member-to-group", ("iam",), ("group", "change")),
    4729: ("removed-member-from-group", ("iam",), ("group", "change")),
    4731: ("added-group-account", ("iam",), ("group", "creation")),
    4732: ("added-member-to-group", ("iam",), ("group", "change")),
    4733: ("removed-member-from-group", ("iam",), ("group", "change")),
    4738: ("modified-user-account", ("iam",), ("user", "change")),
    4740: ("locked-out-user-account", ("iam",), ("user", "change")),
    4741: ("added-computer-account", ("iam",), ("creation", "admin")),
    4742: ("changed-computer-account", ("iam",), ("change", "admin")),
    4756: ("added-member-to-group", ("iam",), ("group", "change")),
    4757: ("removed-member-from-group", ("iam",), ("group", "change")),
    4765: ("added-sid-history", ("iam",), ("user", "change")),
    4768: ("kerberos-authentication-ticket-requested", ("authentication",), ("start",)),
    4769: ("kerberos-service-ticket-requested", ("authentication",), ("start",)),
    4770: ("kerberos-service-ticket-renewed", ("authentication",), ("start",)),
    4771: ("kerberos-preauth-failed", ("authentication",), ("start",)),
    4776: ("credential-validated", ("authentication",), ("start",)),
    4781: ("renamed-user-account", ("iam",), ("user", "change")),
    4794: ("set-dsrm-password", ("iam",), ("admin", "change")),
    4798: ("group-membership-enumerated", ("iam",), ("user", "info")),
    4799: ("user-member-enumerated", ("iam",), ("group", "info")),
    4826: ("boot-configuration-data-loaded", ("configuration",), ("info",)),
    5136: ("directory-service-object-modified", ("iam", "configuration"), ("change",)),
    5140: ("network-share-object-accessed", ("network", "file"), ("info", "access")),
    5142: ("network-share-object-added", ("network", "file"), ("creation",)),
    5143: ("network-share-object-modified", ("network", "file"), ("change",)),
    5144: ("network-share-object-deleted", ("network", "file"), ("deletion",)),
    5145: ("network-share-object-access-checked", ("network", "file"), ("info", "access")),
    5156: ("network-connection-allowed", ("network",), ("connection", "allowed")),
    5157: ("network-connection-blocked", ("network",), ("connection", "denied")),
    5158: ("network-bind-allowed", ("network",), ("connection", "allowed")),
}

# --- PowerShell ---------------------------------------------------------------------------
#: names found in the "Key=Value" details of Windows PowerShell 400-800 events and in the
#: "Key = Value" ContextInfo of 4103, as Winlogbeat's powershell pipeline maps them
POWERSHELL_DETAILS: Final[tuple[FieldRule, ...]] = (
    ("HostApplication", "process.command_line", "str"),
    ("HostApplication", "process.args", "args"),
    ("HostName", "process.title", "str"),
    ("HostVersion", "powershell.process.executable_version", "str"),
    ("HostId", "process.entity_id", "str"),
    ("EngineVersion", "powershell.engine.version", "str"),
    ("RunspaceId", "powershell.runspace_id", "str"),
    ("PipelineId", "powershell.pipeline_id", "str"),
    ("CommandName", "powershell.command.name", "str"),
    ("CommandType", "powershell.command.type", "str"),
    ("CommandPath", "powershell.command.path", "str"),
    ("CommandLine", "powershell.command.value", "str"),
    ("ScriptName", "file.path", "str"),
    ("SequenceNumber", "event.sequence", "long"),
    ("NewEngineState", "powershell.engine.new_state", "str"),
    ("PreviousEngineState", "powershell.engine.previous_state", "str"),
    ("NewProviderState", "powershell.provider.new_state", "str"),
    ("ProviderName", "powershell.provider.name", "str"),
    ("UserId", "user", "domain_user"),
    ("User", "user", "domain_user"),
    ("ConnectedUser", "powershell.connected_user", "domain_user"),
    ("ShellID", "powershell.id", "str"),
)

POWERSHELL_RULES: Final[dict[int, tuple[FieldRule, ...]]] = {
    4104: (
        ("ScriptBlockText", "powershell.file.script_block_text", "str"),
        ("ScriptBlockId", "powershell.file.script_block_id", "str"),
        ("MessageNumber", "powershell.sequence", "long"),
        ("MessageTotal", "powershell.total", "long"),
        *_path("Path", "file"),
    ),
    4105: (
        ("ScriptBlockId", "powershell.file.script_block_id", "str"),
        ("RunspaceId", "powershell.runspace_id", "str"),
    ),
    4106: (
        ("ScriptBlockId", "powershell.file.script_block_id", "str"),
        ("RunspaceId", "powershell.runspace_id", "str"),
    ),
}

POWERSHELL_META: Final[dict[int, EventMeta]] = {
    400: ("Engine Lifecycle", ("process",), ("start",)),
    403: ("Engine Lifecycle", ("process",), ("end",)),
    600: ("Provider Lifecycle", ("process",), ("info",)),
    800: ("Pipeline Execution Details", ("process",), ("info",)),
    4103: ("Executing Pipeline", ("process",), ("info",)),
    4104: ("Execute a Remote Command", ("process",), ("info",)),
    4105: ("Starting Command", ("process",), ("start",)),
    4106: ("Stopping Command", ("process",), ("end",)),
}

MODULE_RULES: Final[dict[str, dict[int, tuple[FieldRule, ...]]]] = {
    "sysmon": SYSMON_RULES,
    "security": SECURITY_RULES,
    "powershell": POWERSHELL_RULES,
}
#: the module's default rules, for event ids without a table of their own (a table lists the
#: common rules it wants, as SYSMON_RULES does)
MODULE_COMMON: Final[dict[str, tuple[FieldRule, ...]]] = {
    "sysmon": SYSMON_COMMON,
    "security": SECURITY_COMMON,
    "powershell": POWERSHELL_DETAILS,
}
MODULE_META: Final[dict[str, dict[int, EventMeta]]] = {
    "sysmon": SYSMON_META,
    "security": SECURITY_META,
    "powershell": POWERSHELL_META,
}

# --- every provider: what pySigma's ecs_windows pipeline queries ----------------------------
_ECS_WINDOWS_POWERSHELL: Final = frozenset(
    {
        "HostApplication",
        "HostName",
        "HostId",
        "CommandName",
        "CommandType",
        "CommandPath",
        "ScriptName",
        "SequenceNumber",
        "NewEngineState",
        "PreviousEngineState",
        "NewProviderState",
        "ProviderName",
        "RunspaceId",
        "PipelineId",
    }
)
#: Applied last and never overwriting, so that a rule's field is present whatever the provider
#: (System 7045's AccountName, a WFP event's Application, …). Source: the field map of
#: sigma/pipelines/elasticsearch/windows.py (pySigma-backend-elasticsearch 2.x).
ECS_WINDOWS_RULES: Final[tuple[FieldRule, ...]] = (
    ("FileName", "file.path", "str"),
    ("ProcessGuid", "process.entity_id", "guid"),
    ("ProcessId", "process.pid", "long"),
    *_exe("Image", "process"),
    ("CurrentDirectory", "process.working_directory", "str"),
    ("ParentProcessGuid", "process.parent.entity_id", "guid"),
    ("ParentProcessId", "process.parent.pid", "long"),
    *_exe("ParentImage", "process.parent"),
    ("ParentCommandLine", "process.parent.command_line", "str"),
    ("CommandLine", "process.command_line", "str"),
    *_path("TargetFilename", "file"),
    ("SourceIp", "source.ip", "ip"),
    ("SourceHostname", "source.domain", "str"),
    ("SourcePort", "source.port", "port"),
    ("DestinationIp", "destination.ip", "ip"),
    ("DestinationHostname", "destination.domain", "str"),
    ("DestinationPort", "destination.port", "port"),
    ("DestinationPortName", "network.protocol", "lower"),
    *_path("ImageLoaded", "file"),
    ("Signed", "file.code_signature.signed", "bool"),
    ("SignatureStatus", "file.code_signature.status", "str"),
    ("SourceProcessGuid", "process.entity_id", "guid"),
    ("SourceProcessId", "process.pid", "long"),
    *_exe("SourceImage", "process"),
    ("Device", "file.path", "str"),
    ("SourceThreadId", "process.thread.id", "long"),
    ("TargetObject", "registry", "registry"),
    ("PipeName", "file.name", "str"),
    ("QueryName", "dns.question.name", "str"),
    ("QueryStatus", "sysmon.dns.status", "str"),
    ("IsExecutable", "sysmon.file.is_executable", "bool"),
    ("Archived", "sysmon.file.archived", "bool"),
    *(rule for rule in POWERSHELL_DETAILS if rule[0] in _ECS_WINDOWS_POWERSHELL),
    ("ScriptBlockText", "powershell.file.script_block_text", "str"),
    ("ScriptBlockId", "powershell.file.script_block_id", "str"),
    ("Payload", "powershell.file.script_block_text", "str"),
    ("MessageNumber", "powershell.sequence", "long"),
    ("MessageTotal", "powershell.total", "long"),
    ("ServiceName", "service.name", "str"),
    ("SubjectUserSid", "user.id", "str"),
    ("SubjectUserName", "user.name", "str"),
    ("SubjectDomainName", "user.domain", "str"),
    ("SubjectLogonId", "winlog.logon.id", "str"),
    ("TargetLogonId", "winlog.logon.id", "str"),
    ("AccountName", "user.name", "str"),
    ("AccountDomain", "user.domain", "str"),
    ("TargetDomainName", "user.domain", "str"),
    *_exe("Application", "process"),
    ("ClientAddress", "source.ip", "ip"),
    ("ClientName", "source.domain", "str"),
    ("DestAddress", "destination.ip", "ip"),
    ("DestPort", "destination.port", "port"),
    ("IpAddress", "source.ip", "ip"),
    ("IpPort", "source.port", "port"),
    ("NewProcessId", "process.pid", "long"),
    *_exe("NewProcessName", "process"),
    *_exe("ParentProcessName", "process.parent"),
    *_exe("ProcessName", "process"),
    ("SourceAddress", "source.ip", "ip"),
    ("WorkstationName", "source.domain", "str"),
)

#: Sysmon task names double as winlog.task; Security task ids (audit subcategories) have names too
# fmt: off
SECURITY_TASKS: Final[dict[int, str]] = {
    12544: "Logon", 12545: "Logoff", 12546: "Account Lockout", 12548: "Special Logon",
    12551: "Other Logon/Logoff Events", 12554: "Group Membership", 12800: "File System",
    12801: "Registry", 12802: "Kernel Object", 12804: "Other Object Access Events",
    12805: "Handle Manipulation", 12807: "Application Generated", 12808: "Detailed File Share",
    12809: "Filtering Platform Packet Drop", 12810: "Filtering Platform Connection",
    12811: "Other Object Access Events", 12812: "Detailed File Share",
    13056: "Sensitive Privilege Use", 13312: "Process Creation", 13313: "Process Termination",
    13314: "DPAPI Activity", 13315: "RPC Events", 13568: "Audit Policy Change",
    13569: "Authentication Policy Change", 13570: "Authorization Policy Change",
    13573: "Other Policy Change Events", 13824: "User Account Management",
    13825: "Computer Account Management", 13826: "Security Group Management",
    13827: "Distribution Group Management", 13828: "Application Group Management",
    13829: "Other Account Management Events", 14080: "Directory Service Access",
    14081: "Directory Service Changes", 14336: "Credential Validation",
    14337: "Kerberos Service Ticket Operations", 14339: "Kerberos Authentication Service",
    12288: "Security State Change", 12289: "Security System Extension", 12290: "System Integrity",
    12292: "Other System Events", 104: "Log clear",
}
# fmt: on
