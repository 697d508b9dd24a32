"""attn-export: export attention modules to ONNX and TensorRT, and verify them against PyTorch.

``attn_export.export(...)`` is the Python API (see :mod:`attn_export.api`); the zoo is
``attn_export.modules``. Both import torch, so they load on first use: the command line
parses its arguments before paying for that.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "export", "ExportResult"]


def __getattr__(name: str) -> Any:
    if name == "export":
        from .api import export

        return export
    if name == "ExportResult":
        from .pipeline import ExportResult

        return ExportResult
    raise AttributeError(f"module 'attn_export' has no attribute {name!r}")
