"""Shared builders: a registered module with seeded weights, its ONNX graph and its input and
output dims, an ORT run, a graph file's parity with PyTorch.

Every test file that needs "the module at its registry defaults, weights from seed S,
exported (optionally with symbolic axes)" uses these instead of its own copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from attn_export import modules
from attn_export.backends.base import ort_session
from attn_export.onnx_export import export_to_onnx, input_names_for
from attn_export.tolerances import Tolerance

Shapes = Sequence[Sequence[int]]


def build_registered(name: str, weight_seed: int = 0, **overrides: object) -> torch.nn.Module:
    """The registered module ``name`` (registry kwargs, ``overrides`` on top) in eval mode,
    its weights drawn from ``weight_seed``."""
    torch.manual_seed(weight_seed)
    return modules.get_spec(name).create(**overrides).eval()


def export_module(
    module: torch.nn.Module,
    shapes: Shapes,
    dynamic_axes: Mapping[int, str] | None = None,
    input_seed: int = 0,
) -> onnx.ModelProto:
    """``module`` exported as the pipeline exports it (TorchScript first, onnxsim), at
    ``shapes``; with ``dynamic_axes`` (dim -> symbol) every input's dims are symbolic there
    (the exporter names the outputs' dims)."""
    names = input_names_for(len(shapes))
    generator = torch.Generator().manual_seed(input_seed)
    inputs = tuple(torch.randn(*s, generator=generator) for s in shapes)
    axes = {n: dict(dynamic_axes) for n in names} if dynamic_axes else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_onnx(module, inputs, names, dynamic_axes=axes).model


def export_registered(
    name: str,
    weight_seed: int = 0,
    shapes: Shapes | None = None,
    dynamic_axes: Mapping[int, str] | None = None,
) -> onnx.ModelProto:
    """The registered module with weights from ``weight_seed``, exported at ``shapes``
    (default: the registry's)."""
    module = build_registered(name, weight_seed)
    return export_module(module, shapes or modules.get_spec(name).shapes, dynamic_axes)


def ort_outputs(
    model: onnx.ModelProto | bytes | Path, feeds: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Every output of ``model`` (a graph, its bytes or its file) on ONNX Runtime CPU; feeds
    the graph does not take are dropped (onnxsim removes inputs the outputs do not depend on)."""
    if isinstance(model, Path):
        source: str | bytes = str(model)
    else:
        source = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort_session(source)
    taken = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in taken})


def assert_file_matches(
    path: Path,
    forward: Callable[[torch.Tensor], torch.Tensor],
    shape: Sequence[int],
    seed: int,
    tol: Tolerance,
) -> None:
    """The one-input, one-output graph at ``path`` gives ``forward``'s output on a standard
    normal draw from numpy's ``seed`` (allclose with ``tol``'s atol and rtol)."""
    x = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
    (got,) = ort_outputs(path, {"input": x})
    with torch.no_grad():
        expected = forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, atol=tol.atol, rtol=tol.rtol)


def input_dims(model: onnx.ModelProto | Path) -> dict[str, list[int | str]]:
    """Each graph input's dims: the symbol where a dim is symbolic, else its size."""
    return _dims(_graph(model).input)


def output_dims(model: onnx.ModelProto | Path) -> dict[str, list[int | str]]:
    """Each graph output's dims, as :func:`input_dims` gives the inputs'."""
    return _dims(_graph(model).output)


def _graph(model: onnx.ModelProto | Path) -> onnx.GraphProto:
    return (onnx.load(str(model)) if isinstance(model, Path) else model).graph


def _dims(values: Sequence[onnx.ValueInfoProto]) -> dict[str, list[int | str]]:
    return {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values
    }
