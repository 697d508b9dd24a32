"""Both ONNX exporters (TorchScript, dynamo) and ``auto``'s fallback: parity with PyTorch on
ONNX Runtime, silence, one-line failures naming the user's source line, dynamic axes, and
the whole zoo through the dynamo exporter.

Parity is judged on a fresh random input, not the export example, so a graph that folded
the example into constants fails. Tolerances: 1e-5 for the small test blocks (fp32, a few
ops, O(1) values: observed error ~1e-7) and the registry's atol/rtol (else 1e-4) for the zoo.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export import modules, onnx_export
from attn_export.compare import compare
from attn_export.errors import VerificationError
from attn_export.onnx_export import (
    DYNAMO_MIN_OPSET,
    ExportedGraph,
    export_to_onnx,
    input_names_for,
)
from attn_export.tolerances import FP32_SMALL, Tolerance, fp32_tolerance
from tests.builders import build_registered, input_dims, ort_outputs


class SpatialAttention(nn.Module):
    """Conv, LayerNorm and softmax attention over pixels; reads its sizes from the input."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, 3 * channels, 1)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.proj(x).flatten(2).chunk(3, dim=1)  # (B, C, HW) each
        attn = (q.transpose(1, 2) @ k * c**-0.5).softmax(-1)  # (B, HW, HW)
        out = (v @ attn.transpose(1, 2)).reshape(b, c, h, w)
        return self.norm(out.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + x


class HaloWindows(nn.Module):
    """Halo-style blocks: zero-pad, then overlapping windows with ``unfold`` (the TorchScript
    exporter cannot size the padded map: "Unfold, input size not accessible")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (2, 2, 2, 2))  # (B, C, H + 4, W + 4)
        windows = padded.unfold(2, 8, 4).unfold(3, 8, 4)  # (B, C, nH, nW, 8, 8)
        return windows.softmax(-1).mean(dim=(-1, -2))


class DataDependentBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x * 2
        return x - 1


class FixedBatchView(nn.Module):
    """Specialises the batch dim: ``view`` with a literal batch of 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(2, x.shape[1] * x.shape[2] * x.shape[3]).softmax(-1)


class PairsOfRows(nn.Module):
    """Needs an even height (``height = 2*_height`` for torch.export)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pairs = x.reshape(b, c, h // 2, 2, w)  # (B, C, H/2, 2, W)
        return pairs.softmax(3).reshape(b, c, h, w)


class NeedsThreeChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError("expects 3 channels")
        return x


def source_line(cls: type, snippet: str) -> str:
    """``file.py:N`` of the first line of ``cls``'s source containing ``snippet``."""
    lines, start = inspect.getsourcelines(cls)
    offset = next(i for i, line in enumerate(lines) if snippet in line)
    source = inspect.getsourcefile(cls)
    assert source is not None
    return f"{Path(source).name}:{start + offset}"


def export(module: nn.Module, example: torch.Tensor, **options: Any) -> ExportedGraph:
    """``module`` exported at ``example``, its one input named ``input``, its output ``output``."""
    return export_to_onnx(module, (example,), ["input"], ["output"], **options)


def flat_outputs(value) -> list[np.ndarray]:
    if isinstance(value, torch.Tensor):
        return [value.detach().numpy()]
    return [array for item in value for array in flat_outputs(item)]


def assert_matches_torch(
    graph: ExportedGraph,
    module: nn.Module,
    shapes: Sequence[tuple[int, ...]],
    tol: Tolerance,
    seed: int,
) -> None:
    """allclose per element, and the scale-free nrmse bound (a zero or constant graph fails even
    where the outputs are smaller than atol)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(s, generator=generator) for s in shapes]
    with torch.no_grad():
        expected = flat_outputs(module(*inputs))
    feeds = {n: t.numpy() for n, t in zip(input_names_for(len(shapes)), inputs)}
    actual = ort_outputs(graph.model, feeds)
    check = compare("onnxruntime", expected, actual, tol)
    assert check.passed, "; ".join(check.failures())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_each_exporter_matches_torch_on_onnxruntime(exporter):
    torch.manual_seed(0)
    module = SpatialAttention().eval()
    graph = export(module, torch.randn(2, 8, 5, 6), exporter=exporter)
    assert graph.exporter == exporter and graph.fallback == ""
    assert {n.domain for n in graph.model.graph.node} <= {""} and not graph.model.functions
    assert input_dims(graph.model) == {"input": [2, 8, 5, 6]}
    assert_matches_torch(graph, module, [(2, 8, 5, 6)], FP32_SMALL, seed=1)


def test_auto_falls_back_to_dynamo_quietly_on_pad_then_unfold(capfd):
    capfd.readouterr()
    graph = export(HaloWindows(), torch.randn(1, 4, 12, 12), exporter="auto")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert graph.exporter == "dynamo"
    assert "aten::unfold" in graph.fallback and "input size not accessible" in graph.fallback
    assert source_line(HaloWindows, "padded.unfold") in graph.fallback
    assert_matches_torch(graph, HaloWindows(), [(1, 4, 12, 12)], FP32_SMALL, seed=2)


def test_torchscript_failure_is_one_quiet_line_naming_operator_and_source(capfd):
    capfd.readouterr()
    with pytest.raises(VerificationError) as caught:
        export(HaloWindows(), torch.randn(1, 4, 12, 12), exporter="torchscript")
    assert capfd.readouterr() == ("", "")  # the ~30-600 line TorchScript IR dump is swallowed
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the TorchScript exporter cannot export aten::unfold (")
    where = source_line(HaloWindows, "padded.unfold")
    assert f"({where}: windows = padded.unfold(2, 8, 4)" in message
    assert message.endswith("): input size not accessible")


def test_data_dependent_branch_warns_with_the_users_line():
    graph = export(DataDependentBranch(), torch.rand(1, 4, 6, 6), exporter="torchscript")
    where = source_line(DataDependentBranch, "if x.mean() > 0")
    (line,) = [w for w in graph.warnings if "TracerWarning" in w]
    assert "Converting a tensor to a Python boolean" in line
    assert f"({where}: if x.mean() > 0:)" in line and "\n" not in line


def test_dynamo_failure_names_the_users_line():
    with pytest.raises(VerificationError) as caught:
        export(DataDependentBranch(), torch.rand(1, 4, 6, 6), exporter="dynamo")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("the dynamo exporter failed (")
    where = source_line(DataDependentBranch, "if x.mean() > 0")
    assert where in message and "data-dependent" in message


def test_dynamo_constraint_violation_names_the_dim():
    with pytest.raises(VerificationError) as caught:
        export(
            FixedBatchView(),
            torch.randn(2, 4, 6, 6),
            exporter="dynamo",
            dynamic_axes={"input": {0: "batch"}},
        )
    assert str(caught.value) == (
        "the dynamo exporter cannot keep 'batch' dynamic: the model specialises it to 2"
    )


def test_auto_reports_both_failures_in_one_line(capfd):
    capfd.readouterr()
    with pytest.raises(VerificationError) as caught:
        export(NeedsThreeChannels(), torch.randn(1, 4, 6, 6), exporter="auto")
    assert capfd.readouterr() == ("", "")
    message = str(caught.value)
    where = source_line(NeedsThreeChannels, "raise ValueError")
    assert "\n" not in message
    assert message.startswith(f"the TorchScript exporter failed ({where}")
    assert f"; then the dynamo exporter failed ({where}" in message
    assert message.endswith("expects 3 channels")


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_dynamic_axes_are_named_symbols_and_run_at_other_sizes(exporter):
    torch.manual_seed(0)
    module = SpatialAttention().eval()
    axes = {"input": {0: "batch", 2: "height"}}
    graph = export(module, torch.randn(1, 8, 5, 6), exporter=exporter, dynamic_axes=axes)
    assert graph.exporter == exporter
    assert input_dims(graph.model) == {"input": ["batch", 8, "height", 6]}
    for seed, shape in enumerate([(1, 8, 5, 6), (3, 8, 5, 6), (3, 8, 9, 6)]):
        assert_matches_torch(graph, module, [shape], FP32_SMALL, seed=seed)


def default_opset(graph: ExportedGraph) -> int:
    """The version of the default ONNX domain the graph imports."""
    return {o.domain: o.version for o in graph.model.opset_import}[""]


def test_dynamo_below_opset_18_exports_at_18_and_says_so():
    example = torch.randn(1, 8, 4, 4)
    graph = export(SpatialAttention().eval(), example, opset=17, exporter="dynamo")
    assert graph.opset == default_opset(graph) == DYNAMO_MIN_OPSET
    assert any("opset" in w and "18" in w and "17" in w for w in graph.warnings)
    torchscript = export(SpatialAttention().eval(), example, opset=17, exporter="torchscript")
    assert torchscript.opset == default_opset(torchscript) == 17


@pytest.mark.parametrize("name", modules.list_modules())
def test_zoo_module_exports_with_dynamo_and_matches_torch(name):
    spec = modules.get_spec(name)
    module = build_registered(name, weight_seed=0)
    example = tuple(torch.randn(s) for s in spec.shapes)
    names = input_names_for(len(spec.shapes))
    graph = export_to_onnx(module, example, names, exporter="dynamo")
    assert graph.exporter == "dynamo"
    assert_matches_torch(graph, module, spec.shapes, fp32_tolerance(spec.atol, spec.rtol), seed=1)


def test_unsimplified_dynamo_graph_is_as_clean_as_torchscripts(monkeypatch):
    # the graph as the exporter's clean-up leaves it, before onnxsim could hide anything
    monkeypatch.setattr(onnx_export, "simplify_graph", lambda model, label: model)
    graph = export(SpatialAttention().eval(), torch.randn(1, 8, 4, 4), exporter="dynamo")
    model = graph.model
    assert not model.functions and {n.domain for n in model.graph.node} <= {""}
    assert [o.domain for o in model.opset_import] == [""]
    # no FX metadata: stack traces would put this machine's absolute paths into the artifact
    values = [model.graph, *model.graph.node, *model.graph.input, *model.graph.output]
    assert not [p.key for v in values for p in v.metadata_props]


def test_dynamo_keeps_a_divisible_dim_symbolic_and_says_what_it_assumes():
    axes = {"input": {0: "batch", 2: "height"}}
    graph = export(PairsOfRows(), torch.randn(1, 3, 4, 5), exporter="dynamo", dynamic_axes=axes)
    assert input_dims(graph.model) == {"input": ["batch", 3, "height", 5]}
    assert any("height = 2*_height" in w for w in graph.warnings)
    for seed, shape in enumerate([(1, 3, 4, 5), (3, 3, 10, 5)]):
        assert_matches_torch(graph, PairsOfRows(), [shape], FP32_SMALL, seed=seed)
