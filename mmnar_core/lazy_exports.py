"""Lazy package exports (PEP 562): a package names what it exports and the module defining each name, and
the import happens on first use, so importing the package (and building `mmnar --help`) stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The package's `__getattr__`: `exports` maps a public name to the module defining it; the value is
    cached in the package's `namespace` (its globals()) so later lookups skip this function."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
