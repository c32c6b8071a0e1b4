"""EVTX parsing speed: the `evtx` package (Rust) against python-evtx, on the same files.

For each library, every record of every file is read and turned into the record dict
`parse_evtx_record` takes, then parsed to ECS:

- evtx (Rust):   PyEvtxParser.records_json() -> orjson.loads -> parse_evtx_record
- python-evtx:   Evtx.records() -> record.xml() -> ElementTree -> the same dict shape
                 (a small converter below) -> parse_evtx_record

Records a library raised on, and records parse_evtx_record refused, are counted as
failures. Wall time only; one process, one thread (the Rust parser's pool set to 1
and to the default, both shown).

    .venv/bin/python bench/evtx_parse.py [--limit-files N] [PATH ...]

Default PATH: $HCM_SOC_EVTX_DIR or /work/shared/corpus/evtx-attack-samples.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from hcm_soc.parsers.base import ParseContext, ParseError
from hcm_soc.parsers.evtx import parse_evtx_record
from machine import machine_line

_NS = "{http://schemas.microsoft.com/win/2004/08/events/event}"
CTX = ParseContext(dataset="windows.evtx")


# --- python-evtx: XML -> the dict shape the Rust parser produces ---------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element(el: ET.Element) -> Any:
    attrs = dict(el.attrib)
    children = list(el)
    if not children:
        text = el.text
        return (
            {"#attributes": attrs, "#text": text}
            if attrs and text
            else ({"#attributes": attrs} if attrs else text)
        )
    out: dict[str, Any] = {"#attributes": attrs} if attrs else {}
    for child in children:
        name = _local(child.tag)
        value = _element(child)
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out


def _event_data(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unnamed: list[Any] = []
    for child in el:
        name = child.attrib.get("Name")
        if _local(child.tag) == "Data" and name:
            out[name] = child.text
        elif _local(child.tag) == "Data":
            unnamed.append(child.text)
        else:
            out[_local(child.tag)] = child.text
    if unnamed:
        out["Data"] = {"#text": unnamed}
    return out


def xml_to_record(xml: str, record_id: int) -> dict[str, Any]:
    root = ET.fromstring(xml)
    event: dict[str, Any] = {}
    for child in root:
        name = _local(child.tag)
        event[name] = _event_data(child) if name == "EventData" else _element(child)
    system = event.get("System") or {}
    if isinstance(system, dict):
        eid = system.get("EventID")
        text = eid.get("#text") if isinstance(eid, dict) else eid
        if isinstance(text, str) and text.isdigit():
            if isinstance(eid, dict):
                eid["#text"] = int(text)
            else:
                system["EventID"] = int(text)
        for key in ("EventRecordID", "Level", "Task", "Opcode", "Version"):
            if isinstance(system.get(key), str) and system[key].isdigit():
                system[key] = int(system[key])
        ex = system.get("Execution")
        if isinstance(ex, dict):
            ex["#attributes"] = {
                k: int(v) if v.isdigit() else v for k, v in ex.get("#attributes", {}).items()
            }
    return {"event_record_id": record_id, "timestamp": None, "data": {"Event": event}}


# --- runs -------------------------------------------------------------------------------------
def run_rust(files: list[Path], threads: int) -> tuple[int, int, int]:
    from evtx import PyEvtxParser

    ok = lib_fail = parse_fail = 0
    for f in files:
        try:
            it: Iterator[Any] = PyEvtxParser(str(f), threads).records_json()
        except OSError:
            lib_fail += 1
            continue
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except RuntimeError:
                lib_fail += 1
                continue
            rec["data"] = orjson.loads(rec["data"])
            try:
                parse_evtx_record(rec, CTX)
                ok += 1
            except ParseError:
                parse_fail += 1
    return ok, lib_fail, parse_fail


def run_python_evtx(files: list[Path]) -> tuple[int, int, int]:
    from Evtx.Evtx import Evtx

    ok = lib_fail = parse_fail = 0
    for f in files:
        try:
            with Evtx(str(f)) as log:
                for record in log.records():
                    try:
                        rec = xml_to_record(record.xml(), record.record_num())
                    except Exception:  # any failure of the library or its XML counts as its failure
                        lib_fail += 1
                        continue
                    try:
                        parse_evtx_record(rec, CTX)
                        ok += 1
                    except ParseError:
                        parse_fail += 1
        except Exception:  # a file python-evtx cannot open at all
            lib_fail += 1
    return ok, lib_fail, parse_fail


def timed(name: str, fn: Callable[[], tuple[int, int, int]]) -> None:
    start = time.perf_counter()
    ok, lib_fail, parse_fail = fn()
    elapsed = time.perf_counter() - start
    rate = ok / elapsed if elapsed else 0.0
    print(
        f"{name:<34} {ok:>7} ok  {lib_fail:>5} library failures  {parse_fail:>4} ParseErrors  "
        f"{elapsed:7.2f} s  {rate:>9,.0f} records/s"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "paths",
        nargs="*",
        default=[os.environ.get("HCM_SOC_EVTX_DIR", "/work/shared/corpus/evtx-attack-samples")],
    )
    ap.add_argument("--limit-files", type=int, default=0, help="only the first N files (0: all)")
    args = ap.parse_args(argv)
    files: list[Path] = []
    for p in map(Path, args.paths):
        files.extend(sorted(p.rglob("*.evtx")) if p.is_dir() else [p])
    if args.limit_files:
        files = files[: args.limit_files]
    if not files:
        print("no .evtx files found", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in files)
    print(f"machine: {machine_line()}")
    print(f"input:   {len(files)} files, {size / 2**20:.1f} MiB ({', '.join(args.paths)})")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    timed("evtx (Rust), 1 thread", lambda: run_rust(files, 1))
    timed("evtx (Rust), default threads", lambda: run_rust(files, 0))
    timed("python-evtx (XML -> dict)", lambda: run_python_evtx(files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
