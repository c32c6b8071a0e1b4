"""Sigma compatibility figure: how many SigmaHQ rules load and compile with the hcm-soc pipeline,
next to how many of the same Windows rules `sigma convert -t lucene -p ecs_windows` converts.

    .venv/bin/python bench/sigma_compat.py [--corpus DIR] [--cli-sample N] [--json] [--write-doc]

The corpus is `--corpus`, else `$HCM_SOC_SIGMAHQ_DIR`, else `../shared/corpus/sigmahq/rules`
(relative to the repository). Every folder is read (windows, linux, web, network, cloud, …).

  ours      `hcm_soc.detection.loader.load_rules` (pySigma parse in collect-errors mode,
            validators, filters, correlations) then `RuleCompiler.compile_all` /
            `compile_correlation`: a rule counts when it loads AND compiles.
  baseline  pySigma's Python API with sigma-cli's own parts: `LuceneBackend` + the
            `ecs_windows` pipeline, one file at a time (a file that does not parse, or a
            rule that does not convert, counts as not converted). Only the `windows` folder:
            `ecs_windows` is a Windows pipeline. The API is used for speed; `--cli-sample N`
            (default 25) runs the real `sigma convert -t lucene -p ecs_windows` on N files
            (fixed seed) and checks that the CLI agrees with the API, file by file.

Everything that does not compile is grouped by reason (messages normalised: quoted values and
numbers replaced), with counts; `--write-doc` writes the figure, the per-folder table and the
full list by reason into the "Sigma compatibility" section of docs/sigma-compatibility.md.
Prints the machine and the command first; the numbers go to stdout (`--json`: one object).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from machine import machine_info, machine_line

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "sigma-compatibility.md"
SECTION = "## Sigma compatibility"


def corpus_dir(arg: str | None) -> Path:
    raw = arg or os.environ.get("HCM_SOC_SIGMAHQ_DIR") or "../shared/corpus/sigmahq/rules"
    path = Path(raw)
    path = (path if path.is_absolute() else ROOT / path).resolve()
    # HCM_SOC_SIGMAHQ_DIR names the checkout (as .ci/run sets it); its rules are in rules/
    return path / "rules" if (path / "rules").is_dir() else path


def folder_of(path: Path, corpus: Path) -> str:
    rel = path.resolve().relative_to(corpus)
    return rel.parts[0] if len(rel.parts) > 1 else "."


def normalise(reason: str) -> str:
    """One group per kind of failure: values, numbers and paths do not split groups."""
    text = reason.strip().splitlines()[0] if reason.strip() else "unknown"
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r'"[^"]*"', '"…"', text)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:160]


# -- ours --------------------------------------------------------------------------------------------
def run_ours(corpus: Path) -> dict[str, Any]:
    from hcm_soc.detection.compiler import RuleCompiler
    from hcm_soc.detection.correlation import compile_correlation
    from hcm_soc.detection.loader import load_rules
    from hcm_soc.errors import HcmSocError
    from hcm_soc.store.names import IndexNames

    t0 = time.perf_counter()
    load = load_rules([corpus])
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    detections = [r for r in load.rules if r.kind == "detection"]
    compiled, compile_problems = RuleCompiler(IndexNames()).compile_all(detections)
    by_key = {c.rule.id: c for c in compiled} | {c.rule.name: c for c in compiled if c.rule.name}
    ok_ids = {c.rule.id for c in compiled}
    failures: list[tuple[Path, str | None, str | None, str]] = []
    for r in load.rules:
        if r.kind == "correlation":
            try:
                compile_correlation(r, by_key)
                ok_ids.add(r.id)
            except HcmSocError as e:
                failures.append((r.path, r.id, r.title, str(e)))
    t_compile = time.perf_counter() - t1
    failures += [(p.path, p.rule_id, p.title, p.message) for p in load.problems]
    failures += [(p.path, p.rule_id, p.title, p.message) for p in compile_problems]
    ok_by_folder: Counter[str] = Counter(folder_of(r.path, corpus) for r in load.rules if r.id in ok_ids)
    return {
        "ok_ids": ok_ids,
        "ok_by_folder": ok_by_folder,
        "failures": failures,
        "loaded": len(load.rules),
        "seconds_load": round(t_load, 1),
        "seconds_compile": round(t_compile, 1),
    }


# -- baseline: LuceneBackend + ecs_windows, as sigma-cli does it ---------------------------------------
def baseline_one(path: Path) -> tuple[int, int, str | None]:
    """(rules in the file, rules converted, first error) for one file."""
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError
    from sigma.pipelines.elasticsearch.windows import ecs_windows

    try:
        collection = SigmaCollection.from_yaml(path.read_text(encoding="utf-8"))
    except (SigmaError, ValueError, TypeError, KeyError) as e:
        return 1, 0, f"{type(e).__name__}: {e}"
    rules = list(collection.rules)
    done, error = 0, None
    for rule in rules:
        try:
            if LuceneBackend(ecs_windows()).convert_rule(rule):
                done += 1
        except (SigmaError, ValueError, TypeError, KeyError, AttributeError) as e:
            error = error or f"{type(e).__name__}: {e}"
    return len(rules), done, error


def run_baseline(files: list[Path]) -> dict[str, Any]:
    t0 = time.perf_counter()
    total = converted = 0
    converted_files: set[Path] = set()
    reasons: Counter[str] = Counter()
    for f in files:
        n, done, error = baseline_one(f)
        total += n
        converted += done
        if done == n:
            converted_files.add(f)
        if error:
            reasons[normalise(error)] += 1
    return {
        "rules": total,
        "converted": converted,
        "converted_files": converted_files,
        "reasons": reasons,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def cli_check(files: list[Path], sample: int, converted_files: set[Path]) -> dict[str, Any]:
    """Run the real sigma-cli on a sample and compare its verdict and query with the API's."""
    sigma = shutil.which("sigma", path=str(Path(sys.executable).parent)) or shutil.which("sigma")
    if sigma is None or sample <= 0:
        return {"sample": 0, "agree": 0, "disagree": [], "cli": None}
    from sigma.backends.elasticsearch import LuceneBackend
    from sigma.collection import SigmaCollection
    from sigma.pipelines.elasticsearch.windows import ecs_windows

    rng = random.Random(5)
    picked = sorted(rng.sample(files, min(sample, len(files))))
    agree, disagree = 0, []
    for f in picked:
        proc = subprocess.run(
            [sigma, "convert", "-t", "lucene", "-p", "ecs_windows", str(f)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        cli_ok = proc.returncode == 0
        api_ok = f in converted_files
        same_text = True
        if cli_ok and api_ok:
            api = [
                str(q)
                for r in SigmaCollection.from_yaml(f.read_text(encoding="utf-8")).rules
                for q in LuceneBackend(ecs_windows()).convert_rule(r)
            ]
            cli_lines = [line for line in proc.stdout.splitlines() if line.strip()]
            same_text = cli_lines[-len(api) :] == api if api else True
        if cli_ok == api_ok and same_text:
            agree += 1
        else:
            disagree.append(
                f"{f.name}: cli={'ok' if cli_ok else 'failed'} api={'ok' if api_ok else 'failed'}"
            )
    return {"sample": len(picked), "agree": agree, "disagree": disagree, "cli": sigma}


# -- report ------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--corpus",
        help="SigmaHQ rules folder (default: $HCM_SOC_SIGMAHQ_DIR or ../shared/corpus/sigmahq/rules)",
    )
    ap.add_argument(
        "--cli-sample", type=int, default=25, help="files to check with the real sigma-cli (0: none)"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--write-doc", action="store_true", help=f"write the results into {DOC.relative_to(ROOT)}"
    )
    args = ap.parse_args()

    corpus = corpus_dir(args.corpus)
    if not corpus.is_dir():
        print(f"no SigmaHQ rules at {corpus}; give --corpus or set HCM_SOC_SIGMAHQ_DIR", file=sys.stderr)
        return 2
    command = "python bench/sigma_compat.py " + " ".join(sys.argv[1:])
    print(f"machine: {machine_line()}", file=sys.stderr)
    print(f"command: {command}", file=sys.stderr)

    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    files_by_folder: Counter[str] = Counter(folder_of(p, corpus) for p in files)
    print(f"corpus: {corpus} ({len(files)} files)", file=sys.stderr)

    ours = run_ours(corpus)
    print(
        f"ours: {len(ours['ok_ids'])} rules compile ({ours['seconds_load']} s load, {ours['seconds_compile']} s compile)",
        file=sys.stderr,
    )
    windows_files = [p for p in files if folder_of(p, corpus) == "windows"]
    base = run_baseline(windows_files)
    print(
        f"baseline: {base['converted']} of {base['rules']} Windows rules ({base['seconds']} s)",
        file=sys.stderr,
    )
    cli = cli_check(windows_files, args.cli_sample, base["converted_files"])

    failures_by_reason: dict[str, list[str]] = defaultdict(list)
    windows_gap: dict[str, list[str]] = defaultdict(list)  # converted by ecs_windows, not by us
    for path, rule_id, title, message in ours["failures"]:
        if path.resolve() in base["converted_files"]:
            windows_gap[normalise(message)].append(f"{path.name} ({title or rule_id or '?'})")
        rel = (
            path.resolve().relative_to(corpus).as_posix()
            if path.resolve().is_relative_to(corpus)
            else str(path)
        )
        failures_by_reason[normalise(message)].append(f"{rel} ({title or rule_id or '?'})")
    folders = sorted(files_by_folder, key=lambda f: (-files_by_folder[f], f))
    ours_windows = ours["ok_by_folder"].get("windows", 0)
    result = {
        "machine": machine_info(),
        "command": command,
        "corpus": str(corpus),
        "files": len(files),
        "ours_compiled": len(ours["ok_ids"]),
        "ours_loaded": ours["loaded"],
        "ours_windows": ours_windows,
        "baseline_windows_rules": base["rules"],
        "baseline_windows_converted": base["converted"],
        "at_least_as_many": ours_windows >= base["converted"],
        "per_folder": {
            f: {"files": files_by_folder[f], "ours": ours["ok_by_folder"].get(f, 0)} for f in folders
        },
        "not_compiled_by_reason": {
            k: len(v) for k, v in sorted(failures_by_reason.items(), key=lambda kv: -len(kv[1]))
        },
        "baseline_failures_by_reason": dict(base["reasons"].most_common()),
        "windows_gap_by_reason": {
            k: len(v) for k, v in sorted(windows_gap.items(), key=lambda kv: -len(kv[1]))
        },
        "cli_check": {k: v for k, v in cli.items() if k != "cli"},
        "seconds": {
            "ours_load": ours["seconds_load"],
            "ours_compile": ours["seconds_compile"],
            "baseline": base["seconds"],
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"SigmaHQ: {result['ours_compiled']} of {len(files)} rule files load and compile with hcm_soc; "
            f"Windows: {ours_windows} (hcm_soc) vs {base['converted']} of {base['rules']} "
            f"(sigma convert -t lucene -p ecs_windows)"
        )
        print(f"{'folder':<14}{'files':>7}{'hcm_soc':>9}")
        for f in folders:
            print(f"{f:<14}{files_by_folder[f]:>7}{ours['ok_by_folder'].get(f, 0):>9}")
        print("not compiled, by reason:")
        for reason, n in result["not_compiled_by_reason"].items():
            print(f"{n:>6}  {reason}")
        print(
            f"sigma-cli check: {cli['agree']} of {cli['sample']} sampled files agree with the API {cli['disagree'] or ''}"
        )
    if args.write_doc:
        write_doc(result, failures_by_reason, windows_gap, folders, files_by_folder, ours, base, cli)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


def write_doc(
    result: dict[str, Any],
    failures_by_reason: dict[str, list[str]],
    windows_gap: dict[str, list[str]],
    folders: list[str],
    files_by_folder: Counter[str],
    ours: dict[str, Any],
    base: dict[str, Any],
    cli: dict[str, Any],
) -> None:
    m = result["machine"]
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB RAM, Python {m['python']} with `{result['command'].strip()}` "
        f"(corpus: SigmaHQ `rules/`, {result['files']} files).",
        "",
        f"- **hcm-soc pipeline: {result['ours_compiled']} of {result['files']} SigmaHQ rule files load and "
        f"compile** (pySigma parse + validators, then `RuleCompiler` / `compile_correlation`).",
        f"- **Windows: {result['ours_windows']} with hcm-soc vs {result['baseline_windows_converted']} of "
        f"{result['baseline_windows_rules']} with `sigma convert -t lucene -p ecs_windows`** "
        f"({'at least as many' if result['at_least_as_many'] else 'FEWER — see the reasons below'}).",
        f"- The baseline was computed with pySigma's Python API (LuceneBackend + `ecs_windows`, what sigma-cli "
        f"runs); the real `sigma` command agreed with it on {cli['agree']} of {cli['sample']} sampled files"
        + (f" (disagreements: {', '.join(cli['disagree'])})" if cli["disagree"] else "")
        + ".",
        f"- Time: load {ours['seconds_load']} s, compile {ours['seconds_compile']} s (hcm-soc); baseline {base['seconds']} s.",
        "",
        "A rule counts for hcm-soc only if it will run against the events hcm-soc stores: a rule whose log "
        'source no collector produces is rejected at compile time ("no hcm-soc data source") instead of '
        "running silently against nothing, which is why cloud, macOS and application folders stay low.",
        "",
        "| folder | files | compile with hcm-soc |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {f} | {files_by_folder[f]} | {ours['ok_by_folder'].get(f, 0)} |" for f in folders]
    lines += ["", "### Windows rules `ecs_windows` converts and hcm-soc does not", ""]
    for reason, items in sorted(windows_gap.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"- {len(items)} × {reason}: " + ", ".join(sorted(items)))
    if not windows_gap:
        lines.append("- none")
    lines += ["", "### Baseline failures (`ecs_windows`)", ""]
    lines += [f"- {n} × {reason}" for reason, n in base["reasons"].most_common()] or ["- none"]
    lines += ["", "### Not compiled with hcm-soc, by reason", ""]
    for reason, items in sorted(failures_by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"#### {len(items)} × {reason}")
        lines.append("")
        lines += [f"- {item}" for item in sorted(items)]
        lines.append("")
    section = "\n".join(lines).rstrip() + "\n"
    header = (
        "# SigmaHQ rules in hcm-soc\n\n"
        "How much of the public SigmaHQ rule set hcm-soc can run. Regenerate with "
        "`.venv/bin/python bench/sigma_compat.py --write-doc`.\n\n"
    )
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else header
    if SECTION in text:
        before = text[: text.index(SECTION)]
        rest = text[text.index(SECTION) + len(SECTION) :]
        nxt = re.search(r"^## ", rest, flags=re.MULTILINE)
        after = rest[nxt.start() :] if nxt else ""
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
