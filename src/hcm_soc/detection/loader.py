"""Read Sigma rules from files and folders: parse, validate, apply filters, resolve correlations.

`load_rules(paths)` returns a `RuleLoad`: the rules that can run, the problems that stopped a
rule (`problems`: each with file, line when known, rule id/title and reason) and findings that
did not (`warnings`). One bad rule or file never stops the others.

- Folders are read recursively (`*.yml`, `*.yaml`), in sorted order; a file may hold several
  YAML documents (pySigma collection actions, correlations, filters).
- pySigma parses in collect-errors mode; a rule with an error is not loaded.
- pySigma's core validators run on every rule. Findings that make a rule unsafe to schedule are
  errors (`ERROR_VALIDATORS`: no id, an id used twice, modifier combinations that cannot mean
  anything); the rest (tags, duplicate titles, wildcard style…) are warnings.
- Rule ids must be unique across all loaded files; the first file (sorted path order) wins.
- Sigma v2 filter documents are applied to the rules they name (`rules: any` = all rules of
  the filter's log source); a filter naming a rule that is not loaded, or whose log source does
  not match the rule's, is a problem of the filter.
- Correlation rules are resolved against the loaded detection rules (by id or `name`).
- `ruleset` is "city" for the project's own `rules/` folder (the folder `rules` next to a
  `pyproject.toml`, or `./rules`), otherwise the folder's name (for a folder called `rules`,
  its parent's name: `../shared/corpus/sigmahq/rules` -> "sigmahq").
- Custom attribute `hcm_soc: {interval: 5m, enabled: false}` sets a rule's own interval
  (`30s`, `5m`, `2h`, `1d` or seconds) and lets it be loaded but not scheduled.
- Rules written in the web console come in as `texts` (`RuleText`: a label path, the YAML, the
  ruleset "console"). They are read before the files: a console rule with the id of a file rule
  replaces it (quietly: that is how a file rule is edited in the console). `overrides` (rule id
  -> enabled, from store/rules.py) switch rules on or off after loading, file rules included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from hcm_soc.detection.model import LoadedRule, RuleProblem

#: validator identifiers whose findings keep a rule from loading (the others are warnings)
ERROR_VALIDATORS = frozenset(
    {"identifier_existence", "identifier_uniqueness", "invalid_modifier_combinations"}
)
#: validators not run: file-name conventions of the SigmaHQ repository, uniqueness (checked across
#: all files here), and ATT&CK/D3FEND tag checks, which download MITRE data (no internet here)
SKIPPED_VALIDATORS = frozenset(
    {
        "duplicate_filename",
        "filename_length",
        "identifier_uniqueness",
        "attacktag",
        "d3_fendtag",
        "tlpv1_tag",
        "tlpv2_tag",
    }
)
CUSTOM_KEY = "hcm_soc"
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: libyaml's loader when present: YAML parsing is most of the load time (2,400 rules: ~5 s in Python)
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True)
class RuleLoad:
    """The result of one load: runnable rules, problems that stopped a rule, warnings."""

    rules: list[LoadedRule]
    problems: list[RuleProblem]
    warnings: list[RuleProblem] = field(default_factory=list)

    def by_id(self) -> dict[str, LoadedRule]:
        return {r.id: r for r in self.rules}


@dataclass(frozen=True, slots=True)
class RuleText:
    """A rule held as text rather than in a file (a console rule); `path` is the label problems use."""

    path: Path
    text: str
    ruleset: str = "console"


def parse_interval(value: Any) -> timedelta:
    """`30s`, `5m`, `2h`, `1d` or a number of seconds -> timedelta; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"interval {value!r}: expected e.g. 30s, 5m, 1h")
    if isinstance(value, int):
        seconds = value
    else:
        m = _INTERVAL.match(str(value))
        if not m:
            raise ValueError(f"interval {value!r}: expected a number with s, m, h or d (e.g. 5m)")
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"interval {value!r}: must be more than 0 seconds")
    return timedelta(seconds=seconds)


def ruleset_of(folder: Path) -> str:
    folder = folder.resolve()
    if folder.name == "rules" and (
        (folder.parent / "pyproject.toml").is_file() or folder == (Path.cwd() / "rules").resolve()
    ):
        return "city"
    if folder.name == "rules" and folder.parent.name:
        return folder.parent.name
    return folder.name


def rule_files(paths: Sequence[Path]) -> tuple[list[tuple[Path, str]], list[RuleProblem]]:
    """(file, ruleset) for every rule file under `paths`, and problems for paths that do not exist."""
    out: list[tuple[Path, str]] = []
    problems: list[RuleProblem] = []
    seen: set[Path] = set()
    for base in paths:
        if base.is_dir():
            ruleset = ruleset_of(base)
            files = sorted(p for p in base.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        elif base.is_file():
            ruleset, files = ruleset_of(base.parent), [base]
        else:
            problems.append(RuleProblem(base, "no such file or folder (check paths.rules in the settings)"))
            continue
        for f in files:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append((f, ruleset))
    return out, problems


def load_rules(
    paths: Sequence[Path],
    *,
    validate: bool = True,
    texts: Sequence[RuleText] = (),
    overrides: Mapping[str, bool] | None = None,
) -> RuleLoad:
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.filters import SigmaFilter

    from hcm_soc.detection.pipeline import register_sigma_aliases

    register_sigma_aliases()
    files, problems = rule_files(paths)
    warnings: list[RuleProblem] = []
    parsed: list[tuple[Any, Path, str, str]] = []  # (rule, file, ruleset, file text)
    filters: list[tuple[Any, Path, str]] = []
    sources: list[tuple[Path, str, str | None]] = [(t.path, t.ruleset, t.text) for t in texts]
    for path, ruleset in files:
        sources.append((path, ruleset, _read_file(path, problems)))
    from_text: set[Path] = {t.path for t in texts}
    for path, ruleset, raw in sources:
        text, items = _parse_text(path, raw, problems)
        for item in items:
            if isinstance(item, SigmaFilter):
                filters.append((item, path, text))
            else:
                parsed.append((item, path, ruleset, text))

    # unique ids across files; the first one (texts, then sorted path order) wins
    first_seen: dict[str, Path] = {}
    unique: list[tuple[Any, Path, str, str]] = []
    for rule, path, ruleset, text in parsed:
        rid = str(rule.id) if rule.id else None
        if rid is not None and rid in first_seen and first_seen[rid] in from_text and path not in from_text:
            continue  # a console rule replaces the file rule with its id
        if rid is not None and rid in first_seen:
            problems.append(
                _problem(
                    path, text, f"duplicate rule id (already loaded from {first_seen[rid]})", rule, key=rid
                )
            )
            continue
        if rid is not None:
            first_seen[rid] = path
        unique.append((rule, path, ruleset, text))

    collection = SigmaCollection([r for r, *_ in unique], resolve_references=False)
    _apply_filters(filters, [r for r, *_ in unique], collection, problems)

    validator = _validator() if validate else None
    rules: list[LoadedRule] = []
    for rule, path, ruleset, text in unique:
        errors: list[str] = []
        if validator is not None:
            for issue in validator.validate_rule(rule):
                ident = _issue_id(issue)
                message = f"{issue.description} [{ident}]"
                if ident in ERROR_VALIDATORS:
                    errors.append(message)
                else:
                    warnings.append(_problem(path, text, message, rule))
        if not rule.id and validator is None:  # else identifier_existence reported it
            errors.append("the rule has no id (every rule needs a UUID: alerts and checkpoints use it)")
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(collection)
            except Exception as e:  # pySigma raises several types for unresolved references
                errors.append(f"correlation references a rule that is not loaded: {e}")
        try:
            custom = _custom(rule)
        except ValueError as e:
            errors.append(str(e))
            custom = (None, True)
        if errors:
            problems.extend(_problem(path, text, m, rule) for m in dict.fromkeys(errors))
            continue
        loaded = _loaded(rule, path, ruleset, *custom)
        if overrides and loaded.id in overrides:
            loaded = replace(loaded, enabled=overrides[loaded.id])
        rules.append(loaded)
    return RuleLoad(rules, problems, warnings)


def _read_file(path: Path, problems: list[RuleProblem]) -> str | None:
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(RuleProblem(path, f"cannot read the file: {e}"))
        return None


def _parse_text(path: Path, text: str | None, problems: list[RuleProblem]) -> tuple[str, list[Any]]:
    """The rules and filters of one file (or console text); its problems appended. Broken rules are
    left out. `text` None: the file could not be read (already a problem)."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaRuleLocation

    if text is None:
        return "", []
    try:
        docs = [d for d in yaml.load_all(text, Loader=_YAML_LOADER) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problems.append(RuleProblem(path, f"invalid YAML: {getattr(e, 'problem', None) or e}", line=line))
        return text, []
    bad = [d for d in docs if not isinstance(d, dict)]
    if bad:
        problems.append(
            RuleProblem(path, f"a YAML document is a {type(bad[0]).__name__}, not a Sigma rule mapping")
        )
        docs = [d for d in docs if isinstance(d, dict)]
    try:
        collection = SigmaCollection.from_dicts(
            docs,
            collect_errors=True,
            source=SigmaRuleLocation(path),
            collect_filters=True,
            resolve_references=False,
        )
    except Exception as e:  # pySigma on input it does not expect: one file, one problem
        problems.append(RuleProblem(path, f"not a valid Sigma document: {type(e).__name__}: {e}"))
        return text, []
    items: list[Any] = []
    reported: set[int] = set()
    for rule in [*collection.rules, *collection.filters]:
        errs = list(getattr(rule, "errors", []) or [])
        if errs:
            for err in errs:
                reported.add(id(err))
                problems.append(_problem(path, text, _message(err, path), rule))
            continue
        items.append(rule)
    for err in collection.errors:
        if id(err) not in reported:
            message = _message(err, path)
            problems.append(RuleProblem(path, message, line=_line_of(text, message)))
    return text, items


def _apply_filters(
    filters: list[tuple[Any, Path, str]], rules: list[Any], collection: Any, problems: list[RuleProblem]
) -> None:
    """Apply each filter to the rules it names; filters naming unknown or mismatched rules are problems."""
    from sigma.correlations import SigmaCorrelationRule

    detections = [r for r in rules if not isinstance(r, SigmaCorrelationRule)]
    for flt, path, text in filters:
        refs = flt.filter.rules
        if isinstance(refs, str):  # "any": every rule of the filter's log source
            targets = detections
        else:
            targets = []
            for ref in refs:
                try:
                    target = collection[ref.reference]
                except Exception:
                    problems.append(
                        _problem(
                            path,
                            text,
                            f"filter names rule '{ref.reference}', which is not loaded",
                            flt,
                            key=ref.reference,
                        )
                    )
                    continue
                if target.logsource not in flt.logsource:
                    problems.append(
                        _problem(
                            path,
                            text,
                            f"filter names rule '{ref.reference}' but its log source ({_ls(flt.logsource)}) "
                            f"does not cover the rule's ({_ls(target.logsource)})",
                            flt,
                            key=ref.reference,
                        )
                    )
                    continue
                targets.append(target)
        for target in targets:
            try:
                flt.apply_on_rule(target)
            except Exception as e:  # a filter that cannot be merged must not break the rule load
                problems.append(_problem(path, text, f"filter could not be applied to {target.id}: {e}", flt))


def _validator() -> Any:
    from sigma.validation import SigmaValidator
    from sigma.validators.core import validators

    return SigmaValidator([v for k, v in validators.items() if k not in SKIPPED_VALIDATORS])


def _issue_id(issue: Any) -> str:
    from sigma.validators.core import validator_classname_to_identifier

    name = type(issue).__name__.replace("Issue", "Validator")
    return validator_classname_to_identifier(name)


def _custom(rule: Any) -> tuple[timedelta | None, bool]:
    attrs = rule.custom_attributes.get(CUSTOM_KEY)
    if attrs is None:
        return None, True
    if not isinstance(attrs, dict):
        raise ValueError(f"{CUSTOM_KEY}: expected a mapping like {{interval: 5m, enabled: true}}")
    unknown = sorted(set(attrs) - {"interval", "enabled"})
    if unknown:
        raise ValueError(f"{CUSTOM_KEY}: unknown key(s) {', '.join(unknown)} (valid: interval, enabled)")
    interval = parse_interval(attrs["interval"]) if "interval" in attrs else None
    enabled = attrs.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError(f"{CUSTOM_KEY}.enabled: expected true or false, got {enabled!r}")
    return interval, enabled


def _loaded(rule: Any, path: Path, ruleset: str, interval: timedelta | None, enabled: bool) -> LoadedRule:
    from sigma.correlations import SigmaCorrelationRule

    corr = isinstance(rule, SigmaCorrelationRule)
    ls = None if corr else rule.logsource
    return LoadedRule(
        id=str(rule.id),
        title=rule.title,
        kind="correlation" if corr else "detection",
        path=path,
        ruleset=ruleset,
        level=rule.level.name.lower() if rule.level else None,
        status=rule.status.name.lower() if rule.status else None,
        product=ls.product if ls else None,
        category=ls.category if ls else None,
        service=ls.service if ls else None,
        tags=tuple(str(t) for t in rule.tags or ()),
        references=tuple(str(r) for r in rule.references or ()),
        description=rule.description,
        interval=interval,
        enabled=enabled,
        sigma=rule,
        name=rule.name,
    )


def _ls(ls: Any) -> str:
    parts = [f"{k}={v}" for k in ("product", "category", "service") if (v := getattr(ls, k, None))]
    return " ".join(parts) or "any"


def _message(err: Exception, path: Path) -> str:
    text = str(err).split("\n")[0]
    # pySigma appends " in <path>" or " in rule <path>": the problem line names the file already
    for where in {str(path.resolve()), str(path)}:
        text = text.replace(f" in rule {where}", "").replace(f" in {where}", "")
    return text.strip()


def _line_of(text: str, message: str, key: str | None = None) -> int | None:
    """Best-effort line of a problem: the first line holding the quoted token of the message."""
    tokens = [key] if key else re.findall(r"'([^']{2,80})'", message)
    for token in tokens:
        for n, line in enumerate(text.splitlines(), 1):
            if token in line:
                return n
    return None


def _problem(path: Path, text: str, message: str, rule: Any, key: str | None = None) -> RuleProblem:
    rid = str(rule.id) if getattr(rule, "id", None) else None
    return RuleProblem(path, message, rid, getattr(rule, "title", None), _line_of(text, message, key))


def iter_problems(load: RuleLoad) -> Iterable[RuleProblem]:
    """Problems then warnings, each sorted by file and line."""
    key = lambda p: (str(p.path), p.line or 0)  # noqa: E731
    yield from sorted(load.problems, key=key)
    yield from sorted(load.warnings, key=key)
