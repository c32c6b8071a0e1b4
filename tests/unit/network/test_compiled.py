"""The compiled (Cython) and pure-Python forms of the network collector: which one is loaded,
the switch between them, and that both turn the same capture into the same records."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hcm_soc.collectors.network as network

ROOT = Path(__file__).resolve().parents[3]

# Builds a small mixed capture with the benchmark's generator (TCP handshakes, HTTP, TLS, DNS,
# NTP, ICMP, rejected connections) and prints which form ran and every record as JSON.
_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
import hcm_soc.collectors.network as network
from hcm_soc.collectors.network.analyzer import NetworkAnalyzer
from hcm_soc.collectors.network.pcapfile import iter_pcap
path = Path(sys.argv[2])
if not path.exists():
    bench.write_mixed(path, 6000, downloads=2)
records = []
analyzer = NetworkAnalyzer(lambda d, e, k: records.append([d, e, k]), internal_networks=["10.0.0.0/8"])
for packet in iter_pcap(path, decoder=analyzer.decoder):
    analyzer.add(packet)
analyzer.finish()
print(network.implementation())
print(json.dumps({"records": records, "stats": analyzer.stats()}, sort_keys=True))
"""


def _run(tmp_path: Path, pure: bool) -> tuple[str, dict[str, object]]:
    env = dict(os.environ)
    env.pop("HCM_SOC_PURE_PYTHON", None)
    if pure:
        env["HCM_SOC_PURE_PYTHON"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(ROOT / "bench" / "pcap_throughput.py"),
            str(tmp_path / "mix.pcap"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    first, rest = proc.stdout.split("\n", 1)
    return first, json.loads(rest)


def test_loaded_form_matches_implementation() -> None:
    text = network.implementation()
    suffixes = set()
    for name in network.COMPILED_MODULES:
        module = importlib.import_module(f"hcm_soc.collectors.network.{name}")
        assert module.__file__ is not None
        suffixes.add(Path(module.__file__).suffix)
    if text.startswith("compiled"):
        assert suffixes == {".so"}, "every per-packet module is compiled, or none is"
    else:
        assert text.startswith("pure Python (")
        assert suffixes == {".py"}


def test_pure_python_switch_loads_the_sources(tmp_path: Path) -> None:
    env = dict(os.environ, HCM_SOC_PURE_PYTHON="1")
    code = (
        "import hcm_soc.collectors.network as n, hcm_soc.collectors.network.flows as f, "
        "hcm_soc.collectors.network.packet as p\n"
        "print(n.implementation()); print(f.__file__); print(p.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == "pure Python (HCM_SOC_PURE_PYTHON is set)"
    assert out[1].endswith("flows.py") and out[2].endswith("packet.py")


def test_compiled_and_pure_python_give_the_same_records(tmp_path: Path) -> None:
    if not network.implementation().startswith("compiled"):
        pytest.skip(f"the network collector is not compiled here: {network.implementation()}")
    pure_form, pure = _run(tmp_path, pure=True)
    compiled_form, compiled = _run(tmp_path, pure=False)
    assert pure_form.startswith("pure Python") and compiled_form.startswith("compiled")
    datasets = {r[0] for r in pure["records"]}  # type: ignore[attr-defined]
    assert datasets == {"network.flow", "network.dns", "network.http", "network.tls"}
    assert len(pure["records"]) > 1000  # type: ignore[arg-type]
    assert compiled == pure


def test_one_stale_module_makes_all_of_them_pure_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Compiled modules share C types (the flow table reads Flow's fields as a C struct), so one
    # stale compiled file must send every module to its source, never just that one.
    compiled = {name: tmp_path / f"{name}.so" for name in network.COMPILED_MODULES}
    monkeypatch.setattr(network, "_PURE_ENV", False)
    monkeypatch.setattr(network, "_compiled_file", compiled.get)
    monkeypatch.setattr(network, "_stale", lambda name, path: False)
    assert network._pure_modules() == {}
    monkeypatch.setattr(network, "_stale", lambda name, path: name == "tcpstream")
    pure = network._pure_modules()
    assert set(pure) == set(network.COMPILED_MODULES)
    assert all("tcpstream.so is older than its source" in reason for reason in pure.values())
    monkeypatch.setattr(network, "_stale", lambda name, path: False)
    monkeypatch.setattr(network, "_compiled_file", lambda name: None if name == "dns" else compiled[name])
    assert set(network._pure_modules().values()) == {"dns is not compiled"}


def test_stale_compares_the_compiled_file_with_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(network, "_HERE", tmp_path)
    so = tmp_path / "flows.so"
    for name in ("flows.py", "flows.pxd", "flows.so"):
        (tmp_path / name).write_text("")
    os.utime(tmp_path / "flows.py", (1_000, 1_000))
    os.utime(tmp_path / "flows.pxd", (1_000, 1_000))
    os.utime(so, (2_000, 2_000))
    assert not network._stale("flows", so)
    os.utime(tmp_path / "flows.pxd", (3_000, 3_000))
    assert network._stale("flows", so)
