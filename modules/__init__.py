"""attn-export's zoo of attention modules, written to export cleanly.

Every file in this package (except those starting with ``_``) holds one paper or family
and registers its blocks with :func:`register_module`. Importing the package imports them
all, so the registry is complete and each registered class is importable from here under
its reference class name (``from attn_export.modules import CBAMBlock``).
"""

from __future__ import annotations

import importlib
import pkgutil

from ._registry import (
    DYNAMIC_AXES,
    ModuleSpec,
    UnknownModuleError,
    all_specs,
    create_module,
    get_spec,
    list_modules,
    register_module,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

for _spec in all_specs():
    globals()[_spec.class_name] = _spec.cls

__all__ = [
    "DYNAMIC_AXES",
    "ModuleSpec",
    "UnknownModuleError",
    "all_specs",
    "create_module",
    "get_spec",
    "list_modules",
    "register_module",
    *sorted(s.class_name for s in all_specs()),
]
