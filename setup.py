"""Build hook: compiles the network collector's hot modules with Cython when it can.

The modules stay plain Python (the reference, and what ruff and mypy check); Cython's
pure-Python mode compiles the same source into C extensions next to them. Without
Cython or a C compiler the package installs as pure Python and runs the same records,
only slower (``hcm_soc.collectors.network.compiled()`` tells which is in use).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import setup

_NETWORK = "src/hcm_soc/collectors/network/"


def _compiled_modules() -> list[str]:
    """`COMPILED_MODULES` of the network package, read from its source (the package is not
    importable before it is built): one list for the build and for the run-time check."""
    tree = ast.parse(Path(_NETWORK, "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"COMPILED_MODULES not found in {_NETWORK}__init__.py")


COMPILED = _compiled_modules()


def _extensions() -> list[object]:
    if os.environ.get("HCM_SOC_PURE_PYTHON") == "1":
        print("hcm-soc: HCM_SOC_PURE_PYTHON=1: network collector not compiled", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("hcm-soc: Cython not available: network collector stays pure Python", file=sys.stderr)
        return []
    try:
        return list(
            cythonize(
                [_NETWORK + name + ".py" for name in COMPILED],
                language_level=3,
                quiet=True,
                compiler_directives={
                    "binding": False,
                    "annotation_typing": False,  # types come from the .pxd files and @cython.locals only
                    "infer_types": None,
                },
            )
        )
    except Exception as exc:  # a Cython failure leaves the package pure Python
        print(
            f"hcm-soc: Cython could not translate the network collector ({exc}): pure Python", file=sys.stderr
        )
        return []


def _build_ext() -> type:
    from setuptools.command.build_ext import build_ext

    class OptionalBuildExt(build_ext):  # type: ignore[misc, valid-type]
        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # any compiler failure: fall back to pure Python
                print(
                    f"hcm-soc: compiling the network collector failed ({exc}): pure Python", file=sys.stderr
                )

        def build_extension(self, ext: object) -> None:
            try:
                super().build_extension(ext)
            except Exception as exc:  # this module only: the others still compile
                print(f"hcm-soc: compiling {ext.name} failed ({exc}): it stays pure Python", file=sys.stderr)  # type: ignore[attr-defined]

    return OptionalBuildExt


setup(ext_modules=_extensions(), cmdclass={"build_ext": _build_ext()})
