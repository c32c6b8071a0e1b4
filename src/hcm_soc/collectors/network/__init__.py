"""Network metadata from packets (pcap files and live capture): flows, DNS, HTTP and TLS records.

Also responsible for choosing, once at import, between the compiled and the pure-Python
form of the per-packet modules. ``setup.py`` compiles them with Cython (pure-Python mode:
the ``.py`` files plus the typed declarations in the ``.pxd`` files beside them) into
extension modules next to the sources, which Python's import prefers. The pure-Python
sources are loaded instead when ``HCM_SOC_PURE_PYTHON=1`` is set (tests, comparisons) and,
per module, when its compiled file is older than its ``.py`` or ``.pxd`` (an edited
checkout not yet rebuilt: running stale compiled code would silently give old records).
:func:`implementation` says which form is in use.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED_MODULES", "implementation"]

# The modules setup.py compiles (live.py and writer.py are not on the per-packet path).
COMPILED_MODULES = (
    "analyzer",
    "community_id",
    "dns",
    "ecs",
    "flowrecord",
    "flows",
    "http",
    "packet",
    "packets",
    "pcapfile",
    "tcpstream",
    "tls",
    "tlshello",
)

_HERE = Path(__file__).parent
_PURE_ENV = os.environ.get("HCM_SOC_PURE_PYTHON", "") not in ("", "0")


def _compiled_file(name: str) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = _HERE / (name + suffix)
        if candidate.exists():
            return candidate
    return None


def _stale(name: str, compiled: Path) -> bool:
    built = compiled.stat().st_mtime
    for ext in (".py", ".pxd"):
        source = _HERE / (name + ext)
        if source.exists() and source.stat().st_mtime > built:
            return True
    return False


def _pure_modules() -> dict[str, str]:
    """Modules to load from source, with the reason: all of them or none, because compiled
    modules share C types (a compiled flow table reading a pure-Python ``Flow`` would crash)."""
    reason = ""
    if _PURE_ENV:
        reason = "HCM_SOC_PURE_PYTHON is set"
    for name in COMPILED_MODULES:
        if reason:
            break
        compiled = _compiled_file(name)
        if compiled is None:
            reason = f"{name} is not compiled"
        elif _stale(name, compiled):
            reason = f"{compiled.name} is older than its source: rebuild with `pip install -e .`"
    return dict.fromkeys(COMPILED_MODULES, reason) if reason else {}


_PURE = _pure_modules()


class _SourceFinder:
    """Finds the ``.py`` of the modules in ``_PURE`` before the path finder finds their ``.so``."""

    prefix = __name__ + "."

    @classmethod
    def find_spec(
        cls, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(cls.prefix):
            return None
        name = fullname[len(cls.prefix) :]
        if name not in _PURE or _compiled_file(name) is None:
            return None
        return importlib.util.spec_from_file_location(fullname, _HERE / (name + ".py"))


if any(_compiled_file(name) is not None for name in _PURE):
    sys.meta_path.insert(0, _SourceFinder)


def implementation() -> str:
    """One line for humans: which form of the per-packet modules this process uses."""
    if not _PURE:
        return f"compiled (Cython, {len(COMPILED_MODULES)} modules)"
    return f"pure Python ({next(iter(_PURE.values()))})"
