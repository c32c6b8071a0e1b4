"""Names of everything hcm-soc keeps in Elasticsearch, derived from one prefix.

<prefix>-events-<dataset>-<namespace>   events (data stream per dataset)
<prefix>-alerts                          alerts (index; alerts are updated)
<prefix>-incidents                       incidents (index; optimistic concurrency)
<prefix>-notices                         the notice outbox: e-mails and webhooks, sent or waiting to be
<prefix>-users                           web console users, sessions and API tokens (hashed)
<prefix>-rules                           rules written in the console (Sigma YAML), enabled or not
<prefix>-state                           engine state: checkpoints, rule health, leases
<prefix>-audit-<namespace>               audit trail (data stream, append-only)
<prefix>-deadletter-<namespace>          documents Elasticsearch refused (data stream)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_.]*$")


@dataclass(frozen=True, slots=True)
class IndexNames:
    prefix: str = "hcm"
    namespace: str = "default"

    def events(self, dataset: str) -> str:
        if not _DATASET_RE.match(dataset) or len(dataset) > 100:
            raise ValueError(
                f"dataset {dataset!r}: expected lowercase letters, digits, '_' or '.' (e.g. 'syslog.auth')"
            )
        return f"{self.prefix}-events-{dataset}-{self.namespace}"

    @property
    def events_pattern(self) -> str:
        return f"{self.prefix}-events-*"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}-incidents"

    @property
    def users(self) -> str:
        return f"{self.prefix}-users"

    @property
    def rules(self) -> str:
        return f"{self.prefix}-rules"

    @property
    def notices(self) -> str:
        return f"{self.prefix}-notices"

    @property
    def state(self) -> str:
        return f"{self.prefix}-state"

    @property
    def audit(self) -> str:
        return f"{self.prefix}-audit-{self.namespace}"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}-deadletter-{self.namespace}"

    @property
    def ingest_pipeline(self) -> str:
        return f"{self.prefix}-events-ingest"

    @classmethod
    def from_settings(cls, settings: object) -> IndexNames:
        from hcm_soc.config import Settings

        assert isinstance(settings, Settings)
        return cls(settings.index.prefix, settings.index.namespace)
