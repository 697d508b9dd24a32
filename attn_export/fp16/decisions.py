"""Choices float16 can flip, found by rule: a choice is at risk when its margin is within a
few times the float16 error of the values it compares.

Decisions: ``TopK`` (the kept/dropped boundary, and the order when sorted), ``ArgMax`` /
``ArgMin`` (best against second best), comparisons (``Greater``, ``Less``, ...: the two
sides' difference), and ``Softmax`` / ``LogSoftmax`` rows (best against second best), which
decide like an argmax once their logits' error reaches a logit unit (large logits: float16's
step at 2048 is 2).

The margin is read on the fp32 graph, the error is the storage simulation's, both on every
tuning probe. Margins of continuous scores fall arbitrarily close to zero on some draw, so
one draw's flips say little; the error hardly varies from draw to draw, and margins within
``DECISION_SAFETY`` times it on the probes mean some unseen draw will flip. The search then
moves the decision and the producers of its inputs to float32, and grows that island
upstream a layer per round until the compared values' error is far below every probe
margin (float32 from the graph inputs and weights on makes it zero), as far as the float16
weight floor allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .convert import Converted
from .graph import FLOAT16, FloatGraph

# A margin within this many times the error of what it compares (a few float16 steps) is at
# risk: the error hardly varies between draws, the margin can shrink to anything.
DECISION_SAFETY = 4.0
# A softmax row decides like an argmax only once its logits err by this much (logit units: one
# unit scales a weight by e); below it a near-tie moves the weights a little, flips nothing.
SOFTMAX_FLIP_ERROR = 1.0
# Keeps the choice-count bound finite when min_cosine is 1 (every flip fails the check).
_MIN_COSINE_GAP = 1e-12
COMPARISONS = frozenset({"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal"})
RANKINGS = frozenset({"TopK", "ArgMax", "ArgMin", "Softmax", "LogSoftmax"})


@dataclass
class Risk:
    """A decision at risk on one probe: how many of its choices, and the closest call."""

    node: str
    op_type: str
    probe: str
    at_risk: int
    choices: int
    margin: float
    error: float

    def detail(self) -> str:
        return (
            f"{self.at_risk} of its {self.choices} {self.op_type} choices at {self.probe} have a"
            f" margin within {DECISION_SAFETY:g}x the float16 error of what they compare"
            f" (closest: margin {self.margin:.3g}, error {self.error:.3g})"
        )


def decision_nodes(graph: FloatGraph) -> list[onnx.NodeProto]:
    return [
        n
        for n in graph.model.graph.node
        if (n.op_type in RANKINGS and graph.is_float(n.input[0]))
        or (n.op_type in COMPARISONS and any(graph.is_float(t) for t in n.input))
    ]


def probe_risks(
    graph: FloatGraph,
    converted: Converted,
    probe: str,
    reference: Mapping[str, np.ndarray],
    simulation: Mapping[str, np.ndarray],
    min_cosine: float,
) -> dict[str, Risk]:
    """The decisions at risk on one probe (node name -> its risk there).

    Only decisions with few choices count (fewer than ``2 / (1 - min_cosine)``, 2000 for
    0.999): there one flipped choice can fail the check (a row replaced by another moves ~2/n
    of the output's energy; the cosine bound allows 2 (1 - min_cosine)), so a flip on an
    unseen draw is what to prevent. Flips among many choices are a steady share of the error
    that the tuning checks measure.
    """
    many_choices = 2.0 / max(1.0 - min_cosine, _MIN_COSINE_GAP)
    found: dict[str, Risk] = {}
    for node in decision_nodes(graph):
        compared = [
            _input_values(graph, converted, node, index, reference, simulation)
            for index in range(2 if node.op_type in COMPARISONS else 1)
        ]
        k = _topk_k(graph, node, reference) if node.op_type == "TopK" else 0
        margins, errors = _margins(node, compared, k, graph.opset)
        if margins.size >= many_choices:
            continue
        risky = margins < DECISION_SAFETY * errors
        if node.op_type in ("Softmax", "LogSoftmax"):
            risky &= errors >= SOFTMAX_FLIP_ERROR
        count = int(np.count_nonzero(risky))
        if count:
            closest = int(np.argmin(np.where(risky, margins - DECISION_SAFETY * errors, np.inf)))
            found[node.name] = Risk(
                node.name,
                node.op_type,
                probe,
                count,
                int(margins.size),
                float(margins[closest]),
                float(errors[closest]),
            )
    return found


def risks(graph: FloatGraph, per_probe: Sequence[Mapping[str, Risk]]) -> list[Risk]:
    """The decisions at risk, in graph order, each on the probe where most of its choices are.

    Decisions downstream of one at risk are judged once that one is safe: its flips change
    what they compare.
    """
    found: list[Risk] = []
    shadowed: set[str] = set()
    for node in decision_nodes(graph):
        at_risk = [probe[node.name] for probe in per_probe if node.name in probe]
        if node.name in shadowed or not at_risk:
            continue
        found.append(max(at_risk, key=lambda r: r.at_risk))  # the first probe among equals
        shadowed |= graph.descendants(node.name)
    return found


def _input_values(
    graph: FloatGraph,
    converted: Converted,
    node: onnx.NodeProto,
    index: int,
    reference: Mapping[str, np.ndarray],
    simulation: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(fp32 value, simulated value as the node reads it) of one compared input."""
    name = node.input[index]
    read = converted.node_inputs[node.name][index]
    if name in graph.initializers:
        exact = graph.array(name)
        stored = exact.astype(np.float16) if converted.types.get(read) == FLOAT16 else exact
        return exact, stored.astype(exact.dtype)
    return reference[name], simulation[read]


def _topk_k(graph: FloatGraph, node: onnx.NodeProto, reference: Mapping[str, np.ndarray]) -> int:
    """TopK's k as the fp32 graph has it (a computed k is read on the fp32 graph only)."""
    name = node.input[1]
    k = graph.array(name) if name in graph.initializers else reference[name]
    return int(np.asarray(k).ravel()[0])


def _margins(
    node: onnx.NodeProto, inputs: Sequence[tuple[np.ndarray, np.ndarray]], k: int, opset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat arrays: every choice's margin on the fp32 graph, and the simulation's error on it
    (``k``: TopK's k; unused for other ops)."""
    if node.op_type in COMPARISONS:
        (a, a_sim), (b, b_sim) = inputs
        with np.errstate(invalid="ignore", over="ignore"):
            margin = np.abs(a.astype(np.float64) - b)
            error = np.abs(a_sim.astype(np.float64) - a) + np.abs(b_sim.astype(np.float64) - b)
        margin, error = np.broadcast_arrays(margin, error)
        return _finite(margin.ravel(), error.ravel())
    values, simulated = inputs[0]
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(simulated.astype(np.float64) - values)
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axis = attributes.get("axis", 0 if node.op_type in ("ArgMax", "ArgMin") else -1)
    if node.op_type in ("Softmax", "LogSoftmax") and opset < 13:  # coerced to 2-D at axis
        axis = attributes.get("axis", 1) % values.ndim
        rows = int(np.prod(values.shape[:axis]))
        values, error = values.reshape(rows, -1), error.reshape(rows, -1)
        axis = 1
    descending = not (node.op_type == "ArgMin" or attributes.get("largest", 1) == 0)
    if node.op_type == "TopK":
        ranked, ranked_error = _ranked(values, error, axis, k + 1, descending)
        gaps, gap_errors = _gaps(ranked, ranked_error)
        if not attributes.get("sorted", 1):  # only the kept/dropped boundary is a choice
            gaps, gap_errors = gaps[..., k - 1 : k], gap_errors[..., k - 1 : k]
        return _finite(gaps.ravel(), gap_errors.ravel())
    ranked, ranked_error = _ranked(values, error, axis, 2, descending)
    gaps, gap_errors = _gaps(ranked, ranked_error)
    return _finite(gaps.ravel(), gap_errors.ravel())


def _ranked(
    values: np.ndarray, errors: np.ndarray, axis: int, count: int, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` best values along ``axis`` (last axis of the result), in order, and their
    errors."""
    values, errors = np.moveaxis(values, axis, -1), np.moveaxis(errors, axis, -1)
    key = np.nan_to_num(-values if descending else values, nan=np.inf)
    count = min(count, values.shape[-1])
    if count < values.shape[-1]:
        best = np.argpartition(key, count - 1, axis=-1)[..., :count]
    else:
        best = np.broadcast_to(np.arange(count), key.shape)
    best = np.take_along_axis(
        best, np.take_along_axis(key, best, -1).argsort(-1, kind="stable"), -1
    )
    return np.take_along_axis(values, best, -1), np.take_along_axis(errors, best, -1)


def _gaps(ranked: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", over="ignore"):
        gaps = np.abs(ranked[..., :-1].astype(np.float64) - ranked[..., 1:])
        return gaps, errors[..., :-1] + errors[..., 1:]


def _finite(margins: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(margins) & np.isfinite(errors)
    return margins[keep], errors[keep]
