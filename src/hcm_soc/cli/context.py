"""What every command needs, built once per invocation from the global options."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from hcm_soc.config import Settings, load_settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from hcm_soc.store.localnode import LocalNode


@dataclass
class AppContext:
    config_file: Path | None = None
    debug: bool = False
    _clients: list[Elasticsearch] = field(default_factory=list)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(config_file=self.config_file)

    def local_node(self) -> LocalNode:
        from hcm_soc.store.localnode import local_node_from_settings

        return local_node_from_settings(self.settings)

    def client(self) -> Elasticsearch:
        from hcm_soc.store.client import make_client

        c = make_client(self.settings)
        self._clients.append(c)
        return c
