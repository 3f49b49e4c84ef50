"""Lazy package attributes, so that importing a package does not pay for importing torch.

    __getattr__ = lazy_attributes({"load_model": "driftsketch.checkpoint:load_model"})   # in __init__.py
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` (``"module:attribute"``) when first asked for."""
    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(name)
        module, _, attribute = table[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    return __getattr__
