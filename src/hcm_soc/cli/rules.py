"""`hcm-soc rules ...`: validate, lint, list, convert, test, backtest, status and silent sources.

Data goes to stdout (a table, or JSON with `--json`), diagnostics to stderr. Exit codes:
0 ok, 1 findings (`validate` found problems; `lint` found a rule that can never match; `test`
matched no event; `silent-sources` found a silent source), 2 usage error or a rule that cannot
be found/compiled, 3 Elasticsearch unreachable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from hcm_soc.cli.context import AppContext
from hcm_soc.cli.output import emit_json, emit_table, info
from hcm_soc.detection.trial import (  # shared with the console's rule workbench
    CompiledSet,
    RuleNotUsable,
    compile_one,
    compile_rules,
    fetch_sources,
    run_compiled,
    run_on_samples,
)
from hcm_soc.errors import DependencyUnavailable, HcmSocError

if TYPE_CHECKING:
    from hcm_soc.detection.loader import RuleLoad
    from hcm_soc.detection.model import CompiledRule, LoadedRule, MatchResult, RuleProblem
    from hcm_soc.store.names import IndexNames

app = typer.Typer(
    help="Sigma rules: validate, lint, list, convert, test, backtest, status, silent sources.",
    no_args_is_help=True,
)

JSON_OPT = typer.Option(False, "--json", help="print JSON")
#: fields shown next to a matched event (the first ones present)
KEY_FIELDS = (
    "@timestamp",
    "host.name",
    "user.name",
    "source.ip",
    "destination.ip",
    "destination.port",
    "url.original",
    "dns.question.name",
    "process.command_line",
    "winlog.event_id",
    "event.action",
)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class RuleNotFound(HcmSocError):
    """The RULE argument names no rule in the configured rule folders."""

    exit_code = 2


# -- helpers ------------------------------------------------------------------------------------------
def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`, `2w` -> timedelta (BadParameter otherwise)."""
    m = _DURATION.match(text)
    if m is None:
        raise typer.BadParameter(
            f"expected a duration like 30m, 24h or 7d, got {text!r}", param_hint="--since"
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def format_interval(value: timedelta | float | None) -> str:
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else (value or 0))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def dotted(doc: Mapping[str, Any], path: str) -> Any:
    """The value at `a.b.c` in a nested document (flat dotted keys too), or None."""
    if path in doc:
        return doc[path]
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def key_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {f: v for f in KEY_FIELDS if (v := dotted(doc, f)) not in (None, "", [])}


def logsource(rule: LoadedRule) -> str:
    """`product/category/service` with `*` for a part the rule leaves open; `-` for a correlation."""
    if rule.kind == "correlation":
        return "-"
    return "/".join(x or "*" for x in (rule.product, rule.category, rule.service))


@contextmanager
def es_errors() -> Iterator[None]:
    """Connection failures of the Elasticsearch client -> DependencyUnavailable (exit 3)."""
    from elastic_transport import ConnectionError as EsConnectionError
    from elastic_transport import ConnectionTimeout

    try:
        yield
    except (EsConnectionError, ConnectionTimeout) as e:
        raise DependencyUnavailable(
            f"Elasticsearch did not answer: {e}; check HCM_SOC_ES_URL or start the local node "
            "with `hcm-soc es start`"
        ) from e


def _names(app_ctx: AppContext) -> IndexNames:
    from hcm_soc.store.names import IndexNames

    return IndexNames.from_settings(app_ctx.settings)


def _load(paths: Sequence[Path]) -> RuleLoad:
    from hcm_soc.detection.loader import load_rules

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(
            f"{', '.join(map(str, missing))}: no such file or folder (rule folders come from "
            "paths.rules / HCM_SOC_PATHS_RULES)"
        )
    return load_rules(list(paths))


def find_rule(load: RuleLoad, spec: str) -> LoadedRule:
    """RULE as a file path (the correlation in it if it has one, else its only rule), a rule id,
    a Sigma `name` or a title (case-insensitive)."""
    path = Path(spec)
    if path.is_file():
        resolved = path.resolve()
        in_file = [r for r in load.rules if r.path.resolve() == resolved]
        corr = [r for r in in_file if r.kind == "correlation"]
        pick = corr if corr else in_file
        if len(pick) == 1:
            return pick[0]
        if not pick:
            problems = [str(p) for p in load.problems if p.path.resolve() == resolved]
            raise RuleNotUsable(
                f"{spec}: no usable rule in this file"
                + (": " + "; ".join(problems) if problems else "")
                + f" (run `hcm-soc rules validate {spec}`)"
            )
        raise RuleNotFound(
            f"{spec} holds {len(pick)} rules ({', '.join(r.id for r in pick)}); name one by its id"
        )
    low = spec.lower()
    for attr in ("id", "name", "title"):
        hits = [r for r in load.rules if (getattr(r, attr) or "").lower() == low]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RuleNotFound(
                f"{len(hits)} rules have the {attr} {spec!r}: "
                + ", ".join(f"{r.id} ({r.path})" for r in hits)
                + "; name one by its id or path"
            )
    close = [r for r in load.rules if low in r.title.lower() or low in r.id]
    hint = "; did you mean " + ", ".join(f"{r.id} '{r.title}'" for r in close[:5]) + "?" if close else ""
    raise RuleNotFound(
        f"no rule with the id, name or title {spec!r} in the configured rule folders{hint} "
        "(see `hcm-soc rules list`, or give the rule's file path)"
    )


def _load_for(app_ctx: AppContext, spec: str) -> tuple[RuleLoad, LoadedRule]:
    """RULE resolved in the configured folders; a file outside them is loaded on its own (a copy
    being edited wins over the installed rule with the same id), with the configured rules added
    so that a correlation finds its base rules."""
    from hcm_soc.detection.loader import RuleLoad

    paths = [p for p in app_ctx.settings.paths.rules if p.exists()]
    extra = Path(spec)
    if extra.is_file() and not any(_under(extra, p) for p in paths):
        own = _load([extra])
        rule = find_rule(own, spec)
        if rule.kind == "correlation" and paths:
            ids = {r.id for r in own.rules}
            others = [r for r in _load(paths).rules if r.id not in ids]
            own = RuleLoad(rules=[*own.rules, *others], problems=own.problems, warnings=own.warnings)
        return own, rule
    load = _load(paths)
    return load, find_rule(load, spec)


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _compile_one(load: RuleLoad, rule: LoadedRule, names: IndexNames) -> tuple[CompiledSet, Any]:
    """(compiled set, the compiled form of `rule`); the rule's own problem -> RuleNotUsable."""
    return compile_one(load.rules, rule, names)


# -- commands -----------------------------------------------------------------------------------------
@app.command()
def validate(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="rule files or folders (default: paths.rules)"),
    warnings: bool = typer.Option(False, "--warnings", help="also print the validators' style findings"),
    lint: bool = typer.Option(
        False, "--lint", help="also lint the rules against the live mappings (see `rules lint`)"
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Parse, validate and compile every rule; print every problem as `file[:line]: id 'title': reason`.

    Exit 1 when any rule has a problem (it would not run, or with --lint can never match on the
    live mappings); warnings (style findings of pySigma's validators) never change the exit code."""
    app_ctx: AppContext = ctx.obj
    targets = list(paths or app_ctx.settings.paths.rules)
    load = _load(targets)
    cset = compile_rules(load.rules, _names(app_ctx))
    problems = [*load.problems, *cset.problems]
    if lint:
        problems += _lint_problems(app_ctx, [*cset.detections.values(), *cset.correlations.values()])
    files = {r.path for r in load.rules} | {p.path for p in load.problems}
    bad_ids = {p.rule_id for p in cset.problems}
    valid = [r for r in load.rules if r.id not in bad_ids]
    if json_out:
        emit_json(
            {
                "paths": [str(p) for p in targets],
                "files": len(files),
                "rules": len(load.rules),
                "valid": len(valid),
                "problems": [_problem_json(p) for p in problems],
                "warnings": [_problem_json(w) for w in load.warnings],
            }
        )
    else:
        for p in problems:
            print(p)
        for w in load.warnings if warnings else []:
            info(f"warning: {w}")
        if load.warnings and not warnings:
            info(f"{len(load.warnings)} warning(s) that do not stop a rule; show them with --warnings")
        print(
            f"{len(files)} file(s), {len(load.rules)} rule(s) loaded: {len(valid)} valid, "
            f"{len(problems)} problem(s)"
        )
    if problems:
        raise typer.Exit(1)


@app.command("list")
def list_rules(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Every rule in paths.rules: id, title, status, level, log source, interval, enabled, ruleset, kind."""
    app_ctx: AppContext = ctx.obj
    load = _load([p for p in app_ctx.settings.paths.rules if p.exists()])
    default = timedelta(seconds=app_ctx.settings.detection.interval)
    rules = sorted(load.rules, key=lambda r: (r.ruleset, str(r.path), r.title))
    if json_out:
        emit_json(
            [
                {
                    "id": r.id,
                    "title": r.title,
                    "status": r.status,
                    "level": r.level,
                    "logsource": {"product": r.product, "category": r.category, "service": r.service},
                    "interval": format_interval(r.interval or default),
                    "interval_default": r.interval is None,
                    "enabled": r.enabled,
                    "ruleset": r.ruleset,
                    "kind": r.kind,
                    "path": str(r.path),
                }
                for r in rules
            ]
        )
    else:
        emit_table(
            ["ID", "TITLE", "STATUS", "LEVEL", "LOG SOURCE", "INTERVAL", "ENABLED", "RULESET", "KIND"],
            [
                [
                    r.id,
                    r.title,
                    r.status,
                    r.level,
                    logsource(r),
                    format_interval(r.interval or default),
                    "yes" if r.enabled else "no",
                    r.ruleset,
                    r.kind,
                ]
                for r in rules
            ],
        )
    if load.problems:
        info(f"{len(load.problems)} rule file problem(s) not listed; see `hcm-soc rules validate`")


@app.command()
def convert(
    ctx: typer.Context,
    rule: str = typer.Argument(..., help="rule file, id, name or title"),
    json_out: bool = typer.Option(False, "--json", help="also print the Elasticsearch DSL and indices"),
) -> None:
    """Print the exact Lucene query of a rule (the text `sigma convert -t lucene -p hcm_soc` prints)."""
    app_ctx: AppContext = ctx.obj
    load, loaded = _load_for(app_ctx, rule)
    _, own = _compile_one(load, loaded, _names(app_ctx))
    if loaded.kind == "detection":
        if json_out:
            emit_json({"id": loaded.id, "title": loaded.title, "kind": "detection", **_query_json(own)})
        else:
            print(own.lucene)
        return
    if json_out:
        emit_json(
            {
                "id": loaded.id,
                "title": loaded.title,
                "kind": "correlation",
                "correlation": own.describe(),
                "type": own.type,
                "group_by": [g.label for g in own.group_by],
                "timespan_seconds": own.timespan.total_seconds(),
                "indices": list(own.indices),
                "rules": [
                    {"id": b.rule.id, "name": b.rule.name, "title": b.rule.title, **_query_json(b)}
                    for b in own.bases
                ],
            }
        )
        return
    print(f"# correlation {loaded.id} '{loaded.title}': {own.describe()}")
    for b in own.bases:
        print(f"# {b.rule.name or b.rule.id}: {b.rule.title}")
        print(b.lucene)


def _problem_json(p: RuleProblem) -> dict[str, Any]:
    return {"file": str(p.path), "line": p.line, "id": p.rule_id, "title": p.title, "reason": p.message}


def _query_json(compiled: CompiledRule) -> dict[str, Any]:
    return {"lucene": compiled.lucene, "query": compiled.query, "indices": list(compiled.indices)}


def _read_events(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import orjson

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(f"{path}: cannot read ({e.strerror})", param_hint="--events") from None
    out: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise typer.BadParameter(f"{path}:{n}: not valid JSON ({e})", param_hint="--events") from None
        if not isinstance(doc, dict):
            raise typer.BadParameter(f"{path}:{n}: expected one JSON object per line", param_hint="--events")
        out.append((n, doc))
    return out


def _print_matches(
    result: MatchResult, sources: Mapping[str, Mapping[str, Any]], line_of: Mapping[str, int] | None
) -> None:
    for m in result.matches:
        where = [f"line {line_of[e.id]}" if line_of and e.id in line_of else e.id for e in m.events]
        if m.group:
            group = " ".join(f"{k}={v}" for k, v in m.group)
            print(f"{group}: {m.count} event(s): {', '.join(where)}")
            continue
        for e, label in zip(m.events, where, strict=True):
            fields = key_fields(sources.get(e.id, {}))
            print(f"{label}: " + " ".join(f"{k}={v}" for k, v in fields.items()))


def _match_json(
    result: MatchResult, sources: Mapping[str, Mapping[str, Any]], line_of: Mapping[str, int] | None
) -> list[dict[str, Any]]:
    return [
        {
            "key": m.key,
            "group": dict(m.group),
            "count": m.count,
            "first_seen": m.first_seen,
            "last_seen": m.last_seen,
            "events": [
                {"id": e.id, "index": e.index, "line": (line_of or {}).get(e.id), "event": sources.get(e.id)}
                for e in m.events
            ],
        }
        for m in result.matches
    ]


@app.command()
def test(
    ctx: typer.Context,
    rule: str = typer.Argument(..., help="rule file, id, name or title"),
    events: Path = typer.Option(..., "--events", "-e", help="ECS events, one JSON object per line"),
    json_out: bool = typer.Option(False, "--json", help="print the matched events as JSON"),
) -> None:
    """Run a rule over the given events in a scratch index of the real Elasticsearch.

    Exit 0 when at least one event matched, 1 when none did (like grep), so scripts can
    assert that a rule fires on its positive samples and not on its negatives."""
    app_ctx: AppContext = ctx.obj
    docs = _read_events(events)
    load, loaded = _load_for(app_ctx, rule)
    with es_errors():
        stored, result = run_on_samples(
            app_ctx.client(),
            _names(app_ctx),
            lambda names: _compile_one(load, loaded, names)[1],
            [d for _, d in docs],
            numbers=[n for n, _ in docs],
            limit=app_ctx.settings.detection.max_alerts_per_run,
        )
    line_of = {s.id: s.line for s in stored}
    sources = {s.id: s.source for s in stored}
    matched_lines = sorted({line_of[e.id] for m in result.matches for e in m.events if e.id in line_of})
    if json_out:
        emit_json(
            {
                "rule": {"id": loaded.id, "title": loaded.title, "kind": loaded.kind},
                "events": len(docs),
                "matched_lines": matched_lines,
                "matches": _match_json(result, sources, line_of),
                "truncated": result.truncated,
            }
        )
    else:
        _print_matches(result, sources, line_of)
        groups = f" in {len(result.matches)} group(s)" if loaded.kind == "correlation" else ""
        print(
            f"{len(matched_lines)} of {len(docs)} event(s) matched{groups}: rule {loaded.id} '{loaded.title}'"
        )
    if not result.matches:
        raise typer.Exit(1)


@app.command()
def backtest(
    ctx: typer.Context,
    rule: str = typer.Argument(..., help="rule file, id, name or title"),
    since: str = typer.Option("24h", "--since", help="how far back (event.ingested): 30m, 24h, 7d"),
    limit: int = typer.Option(1000, "--limit", min=1, help="at most this many matches"),
    json_out: bool = typer.Option(False, "--json", help="print the matched events as JSON"),
) -> None:
    """Run a rule over stored events (event.ingested in [now - since, now)); creates no alert."""
    from hcm_soc.detection.model import Window

    app_ctx: AppContext = ctx.obj
    span = parse_duration(since)
    load, loaded = _load_for(app_ctx, rule)
    names = _names(app_ctx)
    _, own = _compile_one(load, loaded, names)
    end = datetime.now(UTC)
    window = Window(start=end - span, end=end)
    with es_errors():
        es = app_ctx.client()
        result = run_compiled(es, own, window, limit=limit)
        sources = fetch_sources(es, [e for m in result.matches for e in m.events])
    if json_out:
        emit_json(
            {
                "rule": {"id": loaded.id, "title": loaded.title, "kind": loaded.kind},
                "window": {"start": window.start, "end": window.end},
                "examined": result.examined,
                "truncated": result.truncated,
                "matches": _match_json(result, sources, None),
            }
        )
        return
    _print_matches(result, sources, None)
    print(
        f"{len(result.matches)} match(es) of rule {loaded.id} '{loaded.title}' in {result.examined} "
        f"event(s) of its log source ingested since {window.start:%Y-%m-%d %H:%M:%S}Z"
        + (f" (stopped at --limit {limit})" if result.truncated else "")
    )


def _lint_problems(app_ctx: AppContext, compiled: Sequence[Any]) -> list[RuleProblem]:
    """The lint's errors (rules that can never match) as validation problems."""
    from hcm_soc.detection.lint import lint_rules
    from hcm_soc.detection.model import RuleProblem

    with es_errors():
        results = lint_rules(app_ctx.client(), _names(app_ctx), compiled)
    return [
        RuleProblem(Path(r.path), f"can never match: {f}", r.rule_id, r.title)
        for r in results
        for f in r.errors
    ]
