"""The HcmSocError family: every error a person can act on, with where it happened.

Library code raises these; only the CLI turns them into exit codes and only the
web layer into HTTP statuses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in a user file a problem is: file, 1-based line (if known) and key path."""

    file: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            where += f": {self.key}"
        return where


class HcmSocError(Exception):
    """Base of all errors raised on purpose by hcm-soc. `exit_code` follows STYLE.md."""

    exit_code = 1


class ConfigError(HcmSocError):
    """One or more settings are wrong or missing; each problem is one line of the message."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


class DependencyUnavailable(HcmSocError):
    """A service hcm-soc needs (Elasticsearch, SMTP, Maven for the local node) cannot be reached."""

    exit_code = 3


class LocalNodeError(DependencyUnavailable):
    """The local development Elasticsearch node could not be built, started or stopped."""


class SpoolFullError(HcmSocError):
    """Elasticsearch is unreachable and the on-disk spool reached its configured size."""


class TemplateError(HcmSocError):
    """An index template, component template or pipeline could not be installed."""
