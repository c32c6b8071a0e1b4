"""The asset inventory's records: departments and their contacts, assets (the city's systems),
a match of a looked-up value against an asset, and the problems validation reports.

The per-field checks (IP/CIDR, hostname, URL, e-mail, ids) live here as validators so that a
pydantic error points at the exact list element (`addresses[1]`); the cross-record checks
(duplicate ids, unknown department, overlapping ranges) are in `loader`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hcm_soc.errors import HcmSocError, SourceLocation

Sector = Literal[
    "e_government",
    "transport",
    "flood_control",
    "environment",
    "health_food_safety",
    "public_security",
    "urban_management",
    "other",
]
Sensitivity = Literal["public", "internal", "confidential", "secret"]
ContactRole = Literal["owner", "technical", "escalation"]
MatchKind = Literal["ip", "hostname", "url"]

SECTORS: tuple[str, ...] = get_args(Sector)
SENSITIVITIES: tuple[str, ...] = get_args(Sensitivity)
CONTACT_ROLES: tuple[str, ...] = get_args(ContactRole)

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@([^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+)$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ().-]{5,24}$")


# -- field checks (ValueError messages become the problem text) ---------------------------------------
def check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"expected an id of lowercase letters, digits, '-' or '_' (at most 63 characters), got {value!r}"
        )
    return value


def parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP address (as a /32 or /128) or a CIDR range with no host bits set; ValueError otherwise."""
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"expected an IP address or CIDR range, got {value!r}") from None
    raise ValueError(f"{value!r} has host bits set; the range is {loose} (or list the single address)")


def check_address(value: str) -> str:
    parse_network(value)
    return value.strip()


def normalize_hostname(value: str) -> str:
    """Lower case, no trailing dot: the form hostnames are compared in."""
    return value.strip().rstrip(".").lower()


def check_hostname(value: str) -> str:
    """A DNS name or a short host name; `*.` in front makes a wildcard for every name below it."""
    name = normalize_hostname(value)
    labels = name.split(".")
    wildcard = labels[0] == "*"
    if wildcard:
        labels = labels[1:]
    if (
        not name
        or len(name) > 253
        or not labels
        or (wildcard and len(labels) < 2)
        or not all(_LABEL_RE.match(label) for label in labels)
    ):
        raise ValueError(
            "expected a host name such as web01, web01.sotttt.hcm.example.vn or a wildcard "
            f"*.dichvucong.hcm.example.vn, got {value!r}"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return value.strip()
    raise ValueError(f"{value!r} is an IP address: list it under addresses, not hostnames")


def check_url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # a bad port or an unbalanced IPv6 bracket
        ok = False
    if not ok or any(c.isspace() for c in value.strip()):
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value.strip()


def check_email(value: str) -> str:
    if not _EMAIL_RE.match(value.strip()):
        raise ValueError(f"expected an e-mail address such as ten@sotttt.example.vn, got {value!r}")
    return value.strip()


def check_phone(value: str) -> str:
    if not _PHONE_RE.match(value.strip()):
        raise ValueError(f"expected a phone number such as +84 28 0000 0000, got {value!r}")
    return value.strip()


Id = Annotated[str, AfterValidator(check_id)]
Address = Annotated[str, AfterValidator(check_address)]
Hostname = Annotated[str, AfterValidator(check_hostname)]
Url = Annotated[str, AfterValidator(check_url)]
Email = Annotated[str, AfterValidator(check_email)]
Phone = Annotated[str, AfterValidator(check_phone)]
Text = Annotated[str, Field(min_length=1)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- records ------------------------------------------------------------------------------------------
class Contact(_Record):
    """Someone to tell about an incident on a department's system."""

    name: Text
    email: Email | None = None
    phone: Phone | None = None
    webhook: Url | None = None
    role: ContactRole = "owner"


class Department(_Record):
    """A Sở/ban/ngành that runs systems; `name` is its Vietnamese name."""

    id: Id
    name: Text
    name_en: str | None = None
    contacts: list[Contact] = Field(min_length=1)


class Asset(_Record):
    """One city system. `criticality` 1..4 follows the Vietnamese security levels (cấp độ), 4 highest."""

    id: Id
    name: Text
    name_en: str | None = None
    description: str | None = None
    hostnames: list[Hostname] = Field(default_factory=list)
    addresses: list[Address] = Field(default_factory=list)
    urls: list[Url] = Field(default_factory=list)
    department: Id
    sector: Sector
    criticality: int = Field(ge=1, le=4)
    sensitivity: Sensitivity = "internal"
    tags: list[Text] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AssetMatch:
    """`value` (an IP, host name or URL that was looked up) belongs to `asset`."""

    asset: Asset
    department: Department
    matched_by: MatchKind
    value: str


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in an inventory file, with where it is."""

    location: SourceLocation
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InventoryError(HcmSocError):
    """The inventory cannot be used: every problem found, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        source = problems[0].location.file if problems else "the inventory"
        super().__init__(
            f"the asset inventory {source} has {len(problems)} problem(s):\n{shown}{more}\n"
            f"fix them and check with `hcm-soc inventory validate {source}`"
        )
