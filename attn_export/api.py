"""The Python API: the export job as a function, for scripts and a CI's own tests.

    import attn_export
    result = attn_export.export("cbam", shapes=[(1, 512, 7, 7)], out_dir=tmp_path)
    assert result.passed

``model_or_name`` is a registry name, an import path ``package.module:factory``, or a
``torch.nn.Module`` (exported as it is, with its weights). Keywords are the CLI's options
(:class:`attn_export.options.ExportOptions`). Failures raise
:class:`attn_export.errors.AttnExportError` subclasses: ``VerificationError`` when a graph
does not reproduce PyTorch, ``UsageError`` for bad arguments, ``EnvironmentMissingError``
when TensorRT or CUDA is missing for ``trt=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from .pipeline import ExportResult


def export(
    model_or_name: str | nn.Module,
    shapes: Sequence[Sequence[int]] = (),
    inputs: Sequence[str | Path] = (),
    out_dir: str | Path | None = None,
    *,
    quiet: bool = True,
    **options: Any,
) -> ExportResult:
    """Export, verify and write one model; returns the result (``.passed``, ``.onnx_path``,
    ``.manifest``)."""
    from dataclasses import fields

    from .options import DEFAULT_OUT_DIR, ExportOptions
    from .pipeline import run_export

    known = {f.name for f in fields(ExportOptions)} - {"shapes", "inputs", "out_dir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(
            f"export() takes no option {', '.join(unknown)}; options: {', '.join(sorted(known))}"
        )
    chosen = ExportOptions(
        shapes=[tuple(int(d) for d in s) for s in shapes],
        inputs=[Path(p) for p in inputs],
        out_dir=Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR,
        **_normalised(options),
    )
    report = (lambda line: None) if quiet else print
    return run_export(model_or_name, chosen, report=report)


def _normalised(options: dict) -> dict:
    """Accept the CLI's spellings: ``dynamic="batch,height"`` and Path-like weights."""
    out = dict(options)
    if isinstance(out.get("dynamic"), str):
        from .parsing import parse_axes

        out["dynamic"] = parse_axes(out["dynamic"])
    if out.get("weights") is not None:
        out["weights"] = Path(out["weights"])
    return out
