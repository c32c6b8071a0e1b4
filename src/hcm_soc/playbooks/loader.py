"""Loading and validating playbook files: every problem with file:line: key: reason, one bad file never
stopping the others.

Each file holds one playbook. It is parsed twice from the same text: once into YAML nodes (which know
their line numbers) and once into plain data for the pydantic models of `hcm_soc.playbooks.model`.
Each pydantic error location (`steps.1.notify.to`) is followed through the node tree to the line of
that key, and its message is rewritten into one a person can act on (unknown keys name the allowed
ones, an unknown step kind lists the kinds).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hcm_soc.errors import HcmSocError, SourceLocation
from hcm_soc.playbooks.model import (
    BODY_NOT_MAPPING,
    CONDITION_KINDS,
    GIVEN_TWICE,
    STEP_KINDS,
    Playbook,
)

#: keys of `Playbook` the loader sets; a playbook file may not
_LOADER_KEYS = ("source", "line")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in one playbook file."""

    location: SourceLocation
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class PlaybookSet:
    """The playbooks that loaded, sorted by (order, id), and the problems of those that did not."""

    playbooks: list[Playbook]
    problems: list[Problem]
    files: list[Path] = field(default_factory=list)

    def get(self, playbook_id: str) -> Playbook | None:
        return next((p for p in self.playbooks if p.id == playbook_id), None)

    def raise_for_problems(self) -> None:
        """PlaybookError listing every problem, if there is any."""
        if self.problems:
            raise PlaybookError(self.problems)


class PlaybookError(HcmSocError):
    """One or more playbook files are invalid; each problem is one line of the message."""

    exit_code = 1

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} playbook problem(s):\n{lines}\n"
            "fix them and check with `hcm-soc playbooks validate`"
        )


# --- files ------------------------------------------------------------------------------------------


def playbook_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """The playbook files under `paths` (files, or folders searched for *.yml/*.yaml), each once."""
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        elif path.is_file():
            found = [path]
        else:
            problems.append(
                Problem(
                    SourceLocation(str(path)),
                    "no such file or folder; check the path (default: settings paths.playbooks)",
                )
            )
            continue
        for f in found:
            if (key := f.resolve()) not in seen:
                seen.add(key)
                files.append(f)
    return files, problems


def load_playbooks(paths: Sequence[Path]) -> PlaybookSet:
    """Load every playbook under `paths`. A file with any problem is left out (and reported); a
    playbook id used by an earlier file is a problem of the later file, which is left out."""
    files, problems = playbook_files(paths)
    loaded: list[Playbook] = []
    first: dict[str, Playbook] = {}
    for f in files:
        playbook, file_problems = load_playbook_file(f)
        problems.extend(file_problems)
        if playbook is None:
            continue
        if (earlier := first.get(playbook.id)) is not None:
            problems.append(
                Problem(
                    SourceLocation(str(f), playbook.line, "id"),
                    f"duplicate playbook id {playbook.id!r}: also defined in "
                    f"{earlier.source}:{earlier.line or 1}; ids must be unique, rename one",
                )
            )
            continue
        first[playbook.id] = playbook
        loaded.append(playbook)
    loaded.sort(key=lambda p: (p.order, p.id))
    return PlaybookSet(playbooks=loaded, problems=problems, files=files)


def validate(paths: Sequence[Path]) -> list[Problem]:
    """Every problem of the playbooks under `paths` (empty: all of them are valid)."""
    return load_playbooks(paths).problems


def load_playbook_file(path: Path) -> tuple[Playbook | None, list[Problem]]:
    """One playbook file → (the playbook, []) or (None, its problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, [Problem(SourceLocation(str(path)), f"cannot read the file: {e}")]
    return parse_playbook(text, str(path))


def parse_playbook(text: str, source: str) -> tuple[Playbook | None, list[Problem]]:
    """Playbook YAML text → (the playbook, []) or (None, its problems); `source` names it in problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return None, [_yaml_problem(e, source)]
    if root is None or data is None:
        return None, [
            Problem(
                SourceLocation(source, 1),
                "empty file: a playbook is a mapping with id, title, trigger, steps",
            )
        ]
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return None, [
            Problem(
                SourceLocation(source, root.start_mark.line + 1),
                "a playbook file is one mapping with id, title, trigger and steps",
            )
        ]
    problems = list(_duplicate_keys(root, source))
    for key in _LOADER_KEYS:
        if key in data:
            line = _line_at(root, (key,))[1]
            problems.append(
                Problem(SourceLocation(source, line, key), "is set by the loader, remove it from the file")
            )
            del data[key]
    try:
        playbook = Playbook.model_validate({**data, "source": source, "line": root.start_mark.line + 1})
    except ValidationError as e:
        problems.extend(_validation_problems(e, root, source))
        return None, problems
    return (None, problems) if problems else (playbook, [])


# --- YAML locations -------------------------------------------------------------------------------


def _yaml_problem(e: yaml.YAMLError, source: str) -> Problem:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
    return Problem(SourceLocation(source, line), f"YAML syntax error: {what or e}")


def _duplicate_keys(node: yaml.Node, source: str, prefix: str = "") -> Iterable[Problem]:
    """PyYAML silently keeps the last of two equal keys; a person meant something else."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            name = f"{prefix}{k.value}"
            if k.value in seen:
                yield Problem(
                    SourceLocation(source, k.start_mark.line + 1, name),
                    f"key given twice (first at line {seen[k.value]}); keep one",
                )
            else:
                seen[k.value] = k.start_mark.line + 1
            yield from _duplicate_keys(v, source, name + ".")
    elif isinstance(node, yaml.SequenceNode):
        for n, item in enumerate(node.value):
            yield from _duplicate_keys(item, source, f"{prefix.rstrip('.')}[{n}].")


def _line_at(root: yaml.Node, loc: Sequence[int | str]) -> tuple[str, int]:
    """A pydantic error location → (key path as written, e.g. `steps[1].notify.to`, 1-based line).

    The tag pydantic repeats before the field of a one-key condition is skipped; a key that is not in
    the file (missing, or under a value of the wrong shape) is named in the path and the line is that
    of the nearest enclosing key; a step's sibling `id`/`when` is looked up one mapping higher."""
    node = root
    parents: list[yaml.Node] = []
    path = ""
    line = root.start_mark.line + 1
    last_resolved: int | str | None = None
    lost = False
    for el in loc:
        nxt: yaml.Node | None = None
        key_line = None
        if lost:
            path += f"[{el}]" if isinstance(el, int) else f".{el}"
            continue
        if el == last_resolved and el in CONDITION_KINDS:
            continue  # the tag pydantic puts before the field of a one-key condition
        if isinstance(node, yaml.MappingNode) and isinstance(el, str):
            # a step's `id`/`when` may sit next to the kind key, one mapping higher
            holders = (node, *parents[-1:]) if el in ("id", "when") else (node,)
            for holder in holders:
                if not isinstance(holder, yaml.MappingNode):
                    continue
                hit = next(((k, v) for k, v in holder.value if k.value == el), None)
                if hit is not None:
                    key_line, nxt = hit[0].start_mark.line + 1, hit[1]
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(el, int) and 0 <= el < len(node.value):
            nxt = node.value[el]
            key_line = nxt.start_mark.line + 1
        if nxt is None:
            # not in the file (a missing key, or under a value of the wrong shape): named, not followed
            lost = True
            path += f"[{el}]" if isinstance(el, int) else (f".{el}" if path else str(el))
            continue
        parents.append(node)
        node = nxt
        line = key_line or line
        path += f"[{el}]" if isinstance(el, int) else (f".{el}" if path else str(el))
        last_resolved = el
    return path, line


# --- messages ---------------------------------------------------------------------------------------


def _validation_problems(e: ValidationError, root: yaml.Node, source: str) -> list[Problem]:
    out: list[Problem] = []
    seen: set[tuple[str, int, str]] = set()
    errors = e.errors()
    # a step whose settings are not a mapping: that is the problem, not the keys it then lacks
    shapeless = [tuple(x["loc"][:-1]) for x in errors if x["loc"][-1:] == (BODY_NOT_MAPPING,)]
    for err in errors:
        loc = tuple(err["loc"])
        if any(loc[: len(p)] == p and loc[len(p) :] != (BODY_NOT_MAPPING,) for p in shapeless):
            continue
        message, loc = _message(err, loc)
        if message is None:
            continue
        key, line = _line_at(root, loc)
        if (key, line, message) in seen:
            continue
        seen.add((key, line, message))
        out.append(Problem(SourceLocation(source, line, key or None), message))
    return out


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(err: Any, loc: tuple[int | str, ...]) -> tuple[str | None, tuple[int | str, ...]]:
    """A person-readable message for one pydantic error, and the location to report it at."""
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        if name == BODY_NOT_MAPPING:
            return (
                f"the settings of a step are a mapping (e.g. `notify: {{to: [analysts]}}`), got {value!r}",
                loc[:-1],
            )
        if name == GIVEN_TWICE:
            return f"{value} is given twice (next to the step kind and inside it); keep one", loc[:-1]
        allowed = _allowed_keys(loc[:-1])
        if allowed:
            return f"unknown key{_suggest(name, allowed)}; allowed: {', '.join(allowed)}", loc
        return "unknown key", loc
    if kind == "missing":
        if loc and loc[-1] == "kind":
            return None, loc  # reported as the step's shape problem
        return "required key is missing", loc
    if kind in ("union_tag_invalid", "union_tag_not_found") and len(loc) >= 2 and loc[-2] == "steps":
        kinds = ", ".join(STEP_KINDS)
        tag = err.get("ctx", {}).get("tag")
        if kind == "union_tag_invalid" and tag is not None:
            return f"unknown step kind {tag!r}{_suggest(str(tag), STEP_KINDS)}; step kinds: {kinds}", (
                *loc,
                str(tag),
            )
        if isinstance(value, dict):
            keys = ", ".join(str(k) for k in value) or "none"
            return f"a step is a one-key mapping naming its kind ({kinds}); got keys: {keys}", loc
        return f"a step is a mapping such as `- notify: {{...}}` or a kind name ({kinds}); got {value!r}", loc
    if kind == "condition":
        return _condition_message(value), loc
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping (key: value); got {value!r}", loc
    if kind == "list_type":
        return f"expected a list (e.g. [a, b]); got {value!r}", loc
    if kind == "string_type" and isinstance(value, dict):
        return (
            "expected text, got a mapping: YAML reads `: ` inside unquoted text as a key; quote the text",
            loc,
        )
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected {expected}; got {value!r}", loc
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    msg = msg[:1].lower() + msg[1:]
    if value is not None and not isinstance(value, dict | list) and kind not in ("value_error",):
        msg += f"; got {value!r}"
    return msg, loc


def _condition_message(value: Any) -> str:
    kinds = ", ".join(CONDITION_KINDS)
    if isinstance(value, dict):
        if not value:
            return f"empty condition; a condition is one of: {kinds}"
        if len(value) > 1:
            keys = ", ".join(str(k) for k in value)
            return (
                f"a condition has exactly one key, got {len(value)}: {keys}; "
                "combine several with `all: [...]` or `any: [...]`"
            )
        key = str(next(iter(value)))
        return f"unknown condition {key!r}{_suggest(key, CONDITION_KINDS)}; conditions: {kinds}"
    return f"a condition is a mapping such as `rule_ids: [...]` (one of: {kinds}); got {value!r}"


# --- which model an error location points into (to list the allowed keys) -------------------------


def _members(annotation: Any) -> list[Any]:
    """Annotated/Optional/union wrappers peeled off: the concrete types an annotation allows."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _members(a)]
    return [annotation]


def _descend(t: Any, el: int | str) -> list[Any]:
    if isinstance(t, type) and issubclass(t, BaseModel):
        for name, f in t.model_fields.items():
            if el in (name, f.alias):
                return _members(f.annotation)
        return []
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is list and isinstance(el, int) and args:
        return _members(args[0])
    if origin is dict and isinstance(el, str) and len(args) == 2:
        return _members(args[1])
    return []


def _allowed_keys(loc: Sequence[int | str]) -> list[str]:
    """The keys allowed by the model at `loc` (empty if that cannot be told)."""
    current: list[Any] = [Playbook]
    for el in loc:
        # a tagged-union tag (a step kind or condition key) picks one member
        tagged = [
            m for m in current if isinstance(el, str) and m in (STEP_KINDS.get(el), CONDITION_KINDS.get(el))
        ]
        if tagged and len(current) > 1:
            current = tagged
            continue
        nxt: list[Any] = []
        for t in current:
            nxt.extend(_descend(t, el))
        if not nxt and tagged:
            continue  # the tag that repeats the field name of a one-key condition
        current = nxt
    models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) != 1:
        return []
    model = models[0]
    skip = set(_LOADER_KEYS) if model is Playbook else {"kind"}
    return [f.alias or name for name, f in model.model_fields.items() if (f.alias or name) not in skip]
