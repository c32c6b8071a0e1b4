"""Playbooks: which alerts a playbook takes (trigger), what it does with them (steps), the runner.

`load_playbooks(paths)` reads `playbooks/*.yml` (every problem reported with file:line: key);
`select_playbook(playbooks, TriggerContext(alert, assets))` picks the playbook that takes an alert.
The schema is documented in docs/playbooks.md. Nothing heavy is imported here: the runner and its
step actions are imported from their modules by those who run them.
"""

from hcm_soc.playbooks.durations import parse_duration
from hcm_soc.playbooks.loader import PlaybookError, PlaybookSet, Problem, load_playbooks, validate
from hcm_soc.playbooks.model import Playbook, Step
from hcm_soc.playbooks.trigger import TriggerContext, matches, select_playbook

__all__ = [
    "Playbook",
    "PlaybookError",
    "PlaybookSet",
    "Problem",
    "Step",
    "TriggerContext",
    "load_playbooks",
    "matches",
    "parse_duration",
    "select_playbook",
    "validate",
]
