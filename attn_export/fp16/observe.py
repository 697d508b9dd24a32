"""What one tuning probe says about one round's fp16 graph, kept as a few numbers per tensor.

The search simulates every tuning probe each round; holding every intermediate tensor of
every probe (fp32 and simulated) would take gigabytes on large inputs. Each probe is run,
summarised here, and dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import decisions
from .convert import Converted
from .draws import Probe
from .graph import FLOAT16, FP16_MAX, FloatGraph
from .numerics import finite_peak, relative_error
from .result import Fp16Check, check


@dataclass
class ProbeReport:
    check: Fp16Check
    broken: set[str]  # fp16-graph float tensors non-finite where the fp32 graph is finite
    broken_representable: set[str]  # those broken where the fp32 values fit float16
    risks: dict[str, decisions.Risk]  # decision node -> its risk on this probe
    errors: dict[str, float] = field(default_factory=dict)  # relative errors, failing probes only
    flips: dict[str, float] = field(default_factory=dict)  # decision output -> share flipped, idem


def peaks(graph: FloatGraph, reference: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Every float tensor's largest finite magnitude on one probe (graph inputs included)."""
    names = [*graph.input_names, *graph.float_tensors()]
    return {name: finite_peak(reference[name]) for name in names if graph.is_float(name)}


def observe(
    graph: FloatGraph,
    converted: Converted,
    probe: Probe,
    reference: Mapping[str, np.ndarray],
    simulation: Mapping[str, np.ndarray],
    min_cosine: float,
) -> ProbeReport:
    outputs = graph.output_names
    result = check(
        probe.scale,
        [reference[o] for o in outputs],
        [simulation[o] for o in outputs],
        min_cosine,
        probe.draw,
    )
    broken, representable = set(), set()
    for tensor in converted.float_tensors:
        values = simulation[tensor]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(values.sum()):
                continue  # the common case, in one pass (an overflowing sum looks closer)
            exact = reference[converted.origin.get(tensor, tensor)]
            mask = ~np.isfinite(values) & np.isfinite(exact)
            if mask.any():
                broken.add(tensor)
                if (mask & (np.abs(exact) <= FP16_MAX)).any():
                    representable.add(tensor)
    report = ProbeReport(
        result,
        broken,
        representable,
        decisions.probe_risks(graph, converted, probe.label, reference, simulation, min_cosine),
    )
    if result.reference_finite and not result.passed:
        report.errors = tensor_errors(graph, converted, reference, simulation)
        report.flips = {
            t: float(np.mean(simulation[t] != reference[t])) for t in graph.decision_outputs()
        }
    return report


def tensor_errors(
    graph: FloatGraph,
    converted: Converted,
    reference: Mapping[str, np.ndarray],
    simulated: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """Relative error of every float tensor of the fp16 graph against the fp32 graph."""
    error: dict[str, float] = {}
    for name in converted.float_tensors:
        error[name] = relative_error(simulated[name], reference[converted.origin.get(name, name)])
    for name in graph.initializers:
        if converted.home.get(name) == FLOAT16:
            error[name] = graph.fp16_rounding_error(name)
    return error
