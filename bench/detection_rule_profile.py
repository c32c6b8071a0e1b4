"""Detection cost per rule: each compiled SigmaHQ rule timed alone on the benchmark's events.

    .venv/bin/python bench/detection_rule_profile.py [--es-url URL] [--events N] [--prefix P]
        [--top K] [--batch] [--keep] [--json]

Stores N (default 100,000) events from `detection_cycle.EventFactory` (the cycle benchmark's
generator: Sysmon/Security EVTX records, linux auth syslog, nginx access lines, parsed by the
project's parsers) under a fresh prefix (or reuses a kept `--prefix`), compiles the SigmaHQ
Windows, Linux and web rules, and times `find_matches` of every rule alone over all of them.
Prints the total, the K slowest rules with their Lucene text, and how many rules take half of
the time: the rules worth making cheaper (docs/detection-cost.md). `--batch` also times one
`evaluate_batch` of all rules over the same window.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import ApiError

from detection_cycle import REPO, cleanup, load_stored, progress
from hcm_soc.config import load_settings
from hcm_soc.detection.batch import evaluate_batch_outcomes
from hcm_soc.detection.compiler import PythonCheckedRule, RuleCompiler
from hcm_soc.detection.loader import load_rules
from hcm_soc.detection.matcher import find_matches
from hcm_soc.detection.model import Window
from hcm_soc.store.client import make_client
from hcm_soc.store.names import IndexNames
from hcm_soc.store.templates import build_items, install


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--es-url", default=os.environ.get("HCM_SOC_ES_URL") or "http://127.0.0.1:9270")
    ap.add_argument("--events", type=int, default=100_000, help="stored events (default 100,000)")
    ap.add_argument("--prefix", help="reuse the events of a kept run (no loading)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--batch", action="store_true", help="also time one evaluate_batch of all rules")
    ap.add_argument("--limit", type=int, default=100, help="matches per rule (default 100)")
    ap.add_argument(
        "--sigma-dir",
        type=Path,
        default=Path(os.environ.get("HCM_SOC_SIGMAHQ_DIR") or REPO.parent / "shared/corpus/sigmahq"),
    )
    ap.add_argument("--keep", action="store_true", help="keep the indices (reuse with --prefix)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    es = make_client(load_settings(env={}), urls=[args.es_url]).options(request_timeout=1800)
    names = IndexNames(prefix=args.prefix or f"bench{uuid.uuid4().hex[:8]}", namespace="bench")
    load = load_rules([args.sigma_dir / "rules" / d for d in ("windows", "linux", "web")])
    compiled, _ = RuleCompiler(names).compile_all([r for r in load.rules if r.kind == "detection"])
    rules = [c for c in compiled if not isinstance(c, PythonCheckedRule)]
    progress(f"prefix {names.prefix}; {len(rules)} rules compiled to Lucene")
    out: dict[str, Any] = {"prefix": names.prefix}
    if not args.prefix:
        install(es, build_items(names))
    try:
        if not args.prefix:
            out["stored"] = load_stored(es, names, args.events)
            progress(f"stored: {out['stored']}")
        now = datetime.now(UTC)
        window = Window(now - timedelta(days=1), now + timedelta(minutes=1))
        times: list[tuple[float, CompiledRuleInfo]] = []
        started = time.perf_counter()
        for c in rules:
            t0 = time.perf_counter()
            error = ""
            try:
                find_matches(es, c, window, limit=args.limit)
            except ApiError as e:  # one rule Elasticsearch refuses: reported, the others timed
                error = str(e)[:120]
            times.append(
                (time.perf_counter() - t0, CompiledRuleInfo(c.rule.title, str(c.rule.path), c.lucene, error))
            )
        total = time.perf_counter() - started
        times.sort(key=lambda t: -t[0])
        half, acc = 0, 0.0
        for seconds, _info in times:
            acc += seconds
            half += 1
            if acc >= total / 2:
                break
        out |= {"rules": len(times), "total_s": round(total, 1), "rules_for_half": half}
        out["slowest"] = [
            {
                "seconds": round(s, 3),
                "title": i.title,
                "path": i.path,
                "lucene": i.lucene[-300:],
                "error": i.error,
            }
            for s, i in times[: args.top]
        ]
        if args.batch:
            t0 = time.perf_counter()
            evaluate_batch_outcomes(es, [(c, window) for c in compiled], limit=args.limit)
            out["batch_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.keep and not args.prefix:
            cleanup(es, names)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['rules']} rules alone: {out['total_s']} s; the {out['rules_for_half']} slowest take half")
    if "batch_s" in out:
        print(f"evaluate_batch of all rules: {out['batch_s']} s")
    for row in out["slowest"]:
        print(f"{row['seconds']:8.3f} s  {row['title'][:60]:60s} {Path(row['path']).name}")
        print(
            f"           {row['lucene'][-160:]}"
            + (f"\n           ERROR {row['error']}" if row["error"] else "")
        )
    return 0


@dataclass(frozen=True)
class CompiledRuleInfo:
    """What the report shows of a rule."""

    title: str
    path: str
    lucene: str
    error: str


if __name__ == "__main__":
    sys.exit(main())
