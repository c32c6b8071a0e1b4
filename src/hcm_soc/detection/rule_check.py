"""Checking one rule given as text (the console's editor): parse, validate, compile, and say where.

`check_rule_text(text, names)` runs the same loader and compiler as the engine on one Sigma
rule held in memory and returns a `Checked`: the `RuleCheck` the editor shows (every problem as
"line N: key.path: reason"), the loaded rule and its compiled form when it has no problem.

Line numbers come from the YAML parser and pySigma where they know them; otherwise the
problem is placed on the key it is about (a missing condition on `detection`, an unknown log
source on `logsource`). A console rule is one YAML document; a rule without an `id` is checked
with a temporary one (and told that saving gives it one).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from hcm_soc.detection.loader import RuleText, load_rules
from hcm_soc.detection.model import LoadedRule, RuleProblem
from hcm_soc.store.names import IndexNames

#: a rule text larger than this is refused before parsing (a Sigma rule is a few kB)
MAX_RULE_BYTES = 256 * 1024
_KEY_LINE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z0-9_.|\-]+)\s*:(?:\s|$)")
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: words of a line-less message -> the key it is about (first match wins)
_TOPICS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), key)
    for p, key in (
        (r"\bcondition", "detection.condition"),
        (r"data source|log ?source", "logsource"),
        (r"\blevel\b", "level"),
        (r"\bstatus\b", "status"),
        (r"identifier|\bid\b|uuid", "id"),
        (r"\btitle\b", "title"),
        (r"\btags?\b", "tags"),
        (r"\bdate\b|modified", "date"),
        (r"correlation|timespan|group-by", "correlation"),
        (r"hcm_soc|interval", "hcm_soc"),
        (r"detection|selection|search identifier|modifier|field", "detection"),
    )
)


class RuleCheck(BaseModel):
    """What the editor shows for a rule text. `ok` means it can be saved and would run."""

    ok: bool
    rule_id: str | None = None
    title: str | None = None
    problems: list[str] = []  # "line N: key: reason"
    warnings: list[str] = []  # style findings of pySigma's validators; never block a save
    notes: list[str] = []  # e.g. "the rule has no id: saving gives it one"
    query: str | None = None  # the Lucene query (for a correlation: of its first base rule)
    level: str | None = None
    logsource: dict[str, str | None] | None = None
    kind: str | None = None


@dataclass
class Checked:
    """A check plus what it produced: the rule as loaded and compiled (None when it has problems)."""

    check: RuleCheck
    text: str  # the text checked (with the temporary id appended when it had none)
    rule: LoadedRule | None = None
    compiled: Any = None
    context: list[LoadedRule] = field(default_factory=list)  # the rules a correlation may name
    id_missing: bool = False


def key_path_at(text: str, line: int) -> str | None:
    """The dotted key path of block-style YAML at 1-based `line` (`detection.selection.user`)."""
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[:line]:
        m = _KEY_LINE.match(raw)
        if m is None or raw.lstrip().startswith("#"):
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
    return ".".join(k for _, k in stack) or None


def line_of_key(text: str, path: str) -> int | None:
    """The line of `path` (`detection.condition`), or of its longest existing parent."""
    parts = path.split(".")
    best: int | None = None
    depth = 0
    for n, raw in enumerate(text.splitlines(), 1):
        m = _KEY_LINE.match(raw)
        if m is None or depth >= len(parts):
            continue
        if m.group(2) == parts[depth] and (depth > 0 or not m.group(1)):
            best, depth = n, depth + 1
    return best


def placed(text: str, message: str, line: int | None) -> str:
    """`line N: key.path: message`; when the line is unknown, the key is guessed from the message
    (a missing key is placed on its parent: a missing condition on `detection`)."""
    key: str | None = None
    if line is None:
        # a quoted name in the message ('sel2') is looked up first: it points at the exact line
        for token in re.findall(r"'([^'\n]{2,80})'", message):
            line = next((n for n, raw in enumerate(text.splitlines(), 1) if token in raw), None)
            if line is not None:
                key = key_path_at(text, line)
                break
    if line is None:
        topic = next((k for p, k in _TOPICS if p.search(message)), None)
        if topic is not None:
            line = line_of_key(text, topic)
            key = key_path_at(text, line) if line else topic
    elif line:
        key = key_path_at(text, line)
    where = [f"line {line}"] if line else []
    if key and not message.startswith(f"{key}:"):
        where.append(key)
    return ": ".join([*where, message])


def _unlabelled(message: str, label: Path) -> str:
    """The message without the " in <label>" pySigma adds: the editor shows one rule only."""
    for where in (str(label.resolve()), str(label)):
        message = message.replace(f" in rule {where}", "").replace(f" in {where}", "")
        message = message.replace(f"{where}: ", "")
    return message.strip()


def _problem_text(text: str, p: RuleProblem) -> str:
    return placed(text, p.message, p.line)


def check_rule_text(
    text: str,
    names: IndexNames,
    *,
    context: Sequence[LoadedRule] | None = None,
    context_loader: Any = None,
    label: Path | None = None,
) -> Checked:
    """Check `text` as the engine would load and compile it (see the module doc).

    A correlation may name other rules: `context_loader(text, label)` returns the load of the
    configured rules with this text among them (the workbench passes the file and console rules)."""
    from hcm_soc.detection.compiler import RuleCompileError, RuleCompiler

    if not text.strip():
        return Checked(
            RuleCheck(ok=False, problems=["line 1: the rule is empty: write a Sigma rule in YAML"]), text
        )
    size = len(text.encode("utf-8"))
    if size > MAX_RULE_BYTES:
        return Checked(
            RuleCheck(
                ok=False, problems=[f"the rule is {size} bytes; at most {MAX_RULE_BYTES} are accepted"]
            ),
            text,
        )
    try:
        docs = [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        why = getattr(e, "problem", None) or str(e)
        where = f"line {line}: " if line else ""
        return Checked(RuleCheck(ok=False, problems=[f"{where}invalid YAML: {why}"]), text)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        what = (
            f"{len(docs)} YAML documents"
            if len(docs) != 1
            else f"a YAML {type(docs[0]).__name__}, not a mapping of Sigma keys"
        )
        return Checked(
            RuleCheck(
                ok=False,
                problems=[
                    f"line 1: the text holds {what}; a console rule is one Sigma rule (title, id, logsource…)"
                ],
            ),
            text,
        )
    doc: dict[str, Any] = docs[0]
    notes: list[str] = []
    id_missing = not doc.get("id")
    checked_text = text
    if id_missing:
        # appended, not inserted: the line numbers of the problems stay those of the editor
        checked_text = text.rstrip("\n") + f"\nid: {uuid.uuid4()}\n"
        notes.append("the rule has no id: saving gives it a new UUID")
    label = label or Path("console") / f"{doc.get('id') or 'new'}.yml"
    if "correlation" in doc and context_loader is not None:
        load = context_loader(checked_text, label)
    else:
        load = load_rules([], texts=[RuleText(label, checked_text)])
    own_problems = [p for p in load.problems if p.path == label]
    warnings = [_problem_text(text, w) for w in load.warnings if w.path == label]
    rule = next((r for r in load.rules if r.path == label), None)
    base = RuleCheck(
        ok=False,
        rule_id=None if id_missing else str(doc.get("id")),
        title=str(doc["title"]) if doc.get("title") else None,
        warnings=warnings,
        notes=notes,
        kind="correlation" if "correlation" in doc else "detection",
    )
    if own_problems or rule is None:
        problems = [_problem_text(text, p) for p in own_problems] or [
            "the rule did not load (no reason given)"
        ]
        return Checked(base.model_copy(update={"problems": list(dict.fromkeys(problems))}), checked_text)
    base = base.model_copy(
        update={
            "level": rule.level,
            "logsource": None
            if rule.kind == "correlation"
            else {"product": rule.product, "category": rule.category, "service": rule.service},
            "kind": rule.kind,
        }
    )
    compiled: Any = None
    try:
        if rule.kind == "detection":
            compiled = RuleCompiler(names).compile(rule)
            query = compiled.lucene
        else:
            from hcm_soc.detection.trial import compile_one

            _, compiled = compile_one(load.rules, rule, names)
            query = " | ".join(b.lucene for b in compiled.bases)
    except RuleCompileError as e:
        reason = _unlabelled(e.reason, label)
        return Checked(base.model_copy(update={"problems": [placed(text, reason, None)]}), checked_text, rule)
    except Exception as e:  # a correlation that does not compile, or pySigma on odd input
        reason = _unlabelled(str(e), label)
        return Checked(base.model_copy(update={"problems": [placed(text, reason, None)]}), checked_text, rule)
    check = base.model_copy(update={"ok": True, "query": query})
    return Checked(check, checked_text, rule, compiled, list(load.rules), id_missing)
