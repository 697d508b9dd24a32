"""The rules that move nodes to float32, each returning {node name: reason}.

- growth (once the first round has the fp32 peaks): a tensor whose peak grows with the
  input scale is judged on that growth, not on the probes' maximum: with scale exponent
  ``p`` (its peak grows as scale**p between the two largest scales), it must fit float16
  with inputs ``GROWTH_HEADROOM`` times larger than the probes', i.e. peak * 2**p <= 65504.
  Its producer and its readers stay float32 otherwise.
- overflow (each round, on the simulation): the first tensor (graph order) whose fp32
  values float16 could hold but which the simulation made non-finite, even if the output
  check passed (a saturating Sigmoid can hide it): its producer and, walking back along the
  non-finite tensors, every producer of the overflow that reaches it. For a failing check
  with no such tensor, the first non-finite tensor; at an island's edge (a Cast into float16
  of a value beyond 65504) the readers of that value join the island. Infinities that break
  nothing (a -1e30 mask stored as -inf before a Softmax) are left alone.
- decisions: see :mod:`.decisions`.
- precision (a tuning check's cosine is low): on the worst probe, the node that amplifies
  the float16 rounding of its inputs the most (``rel_err(output) / max(rel_err(inputs),
  2**-11)``, for outputs with a sizeable error; a flipped TopK/ArgMax/comparison counts as
  flips / 2**-11) joins with the producers of its float16 inputs (through data-movement
  ops), since it is their rounding it amplifies (cancellation before a normalisation, large
  softmax logits). A node already in an island with float32 inputs extends the island one
  producer layer upstream.

The search takes decision and precision additions only while at least half the float
weights stay float16 (the --fp16 contract); overflow it fixes regardless.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .convert import Converted, required_type
from .draws import Probe
from .graph import DATA_MOVEMENT_OPS, FLOAT16, FP16_MAX, FP16_UNIT_ROUNDOFF, FloatGraph
from .observe import ProbeReport

GROWTH_HEADROOM = 2.0  # judge growing tensors as if the inputs were twice the probes' size
MIN_GROWTH = 0.25  # below this scale exponent a tensor does not grow (masks, normalised values)
UNKNOWN_GROWTH = 1.0  # the exponent assumed when the probes have a single scale
# The fitted exponent's ceiling: a two-point fit on small peaks can return any slope; this
# bounds the prediction at GROWTH_HEADROOM**4 = 16x the probes' peak.
MAX_GROWTH = 4.0
# A precision culprit magnifies its inputs' rounding error at least this much, and its output
# error reaches this share of the error the cosine bound allows.
AMPLIFICATION_MIN = 4.0
SIGNIFICANT_ERROR_SHARE = 0.25


# ----------------------------------------------------------------------------- growth


def growth_exponent(peaks: Mapping[float, float]) -> float:
    """``p`` in peak ~ scale**p between the two largest scales (clamped to [0, MAX_GROWTH])."""
    scales = sorted(s for s in peaks if s > 0)
    if len(scales) < 2:
        return UNKNOWN_GROWTH
    low, high = scales[-2], scales[-1]
    if peaks[low] <= 0.0 or peaks[high] <= 0.0:
        return 0.0 if peaks[high] <= 0.0 else UNKNOWN_GROWTH
    return min(max(math.log(peaks[high] / peaks[low]) / math.log(high / low), 0.0), MAX_GROWTH)


def growth_overflow(
    graph: FloatGraph, probes: Sequence[Probe], probe_peaks: Sequence[Mapping[str, float]]
) -> dict[str, str]:
    """Producers and readers of the tensors that fit float16 on every probe but, judged on
    their growth, would not on a draw ``GROWTH_HEADROOM`` times larger."""
    additions: dict[str, str] = {}
    for tensor in probe_peaks[0]:
        peaks: dict[float, float] = defaultdict(float)
        for probe, peak in zip(probes, probe_peaks, strict=True):
            peaks[probe.scale] = max(peaks[probe.scale], peak[tensor])
        top_scale = max(peaks)
        top, p = peaks[top_scale], growth_exponent(peaks)
        if max(peaks.values()) > FP16_MAX or p < MIN_GROWTH:
            continue  # beyond float16 already (the simulation judges those), or not growing
        predicted = top * GROWTH_HEADROOM**p
        if predicted <= FP16_MAX:
            continue
        why = (
            f"grows as scale^{p:.1f}, reaches {top:.3g} at x{top_scale:g}: {predicted:.3g} for"
            f" inputs {GROWTH_HEADROOM:g}x larger (float16 max {FP16_MAX:g})"
        )
        producer = graph.producer.get(tensor)
        if producer is not None:
            additions.setdefault(producer.name, f"overflow risk: its output {tensor} {why}")
        for reader in graph.consumers.get(tensor, []):
            fp16_reads = [
                i
                for i, t in enumerate(reader.input)
                if t == tensor and required_type(reader, i, FLOAT16) == FLOAT16
            ]
            if fp16_reads:
                additions.setdefault(reader.name, f"overflow risk: reads {tensor}, which {why}")
    return additions


# ----------------------------------------------------------------------------- overflow


def first_non_finite(
    converted: Converted,
    reports: Sequence[ProbeReport],
    indices: Sequence[int],
    representable_only: bool,
) -> tuple[str, int] | None:
    """(tensor, probe index) of the first tensor in graph order that float16 storage broke."""
    for tensor in converted.float_tensors:
        for i in indices:
            broken = reports[i].broken_representable if representable_only else reports[i].broken
            if tensor in broken:
                return tensor, i
    return None


def overflow_island(
    graph: FloatGraph,
    converted: Converted,
    blocked: Mapping[str, str],
    tensor: str,
    probe: Probe,
    probe_peaks: Mapping[str, float],
    broken: set[str],
) -> dict[str, str]:
    """Nodes to move to float32 so that ``tensor`` is no longer broken on ``probe``: its
    producer and, upstream, every producer of the overflowed tensors (``broken``) that reach it."""

    def peak(name: str) -> float:
        return probe_peaks[converted.origin.get(name, name)]

    if tensor in converted.cast_consumers:  # an island's output that float16 cannot hold
        origin = converted.origin[tensor]
        reason = f"overflow: reads {origin}, which reaches {peak(tensor):.3g} at {probe.label}"
        return {
            consumer: f"{reason} (float16 max {FP16_MAX:g})"
            for consumer in converted.cast_consumers[tensor]
            if consumer not in blocked
        }
    producers = {o: n for n in converted.model.graph.node for o in n.output if o}
    additions: dict[str, str] = {}
    queue, seen = [producers[tensor]], set()
    while queue:
        node = queue.pop(0)
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.name in graph.node_by_name and node.name not in blocked:
            outputs = [o for o in node.output if converted.origin.get(o) in converted.home]
            highest = max(outputs, key=peak, default=None)
            if highest is not None and peak(highest) > FP16_MAX:
                additions[node.name] = (
                    f"overflow: output {converted.origin[highest]} reaches {peak(highest):.3g}"
                    f" at {probe.label} (float16 max {FP16_MAX:g})"
                )
            else:
                additions[node.name] = (
                    f"overflow: its output turns non-finite at {probe.label} from"
                    " float16-overflowed inputs"
                )
        for name in node.input:  # walk back along the broken tensors (through inserted Casts)
            if name in broken:
                queue.append(producers[name])
    if not additions:  # already float32, broken by float16-rounded inputs (a divisor gone to 0)
        name = producers[tensor].name
        if name in graph.node_by_name:
            additions = with_input_producers(
                graph,
                blocked,
                name,
                "",
                f"non-finite: feeds {name}, whose output turns non-finite at {probe.label}",
            )
    return additions


# ----------------------------------------------------------------------------- precision


def precision_additions(
    graph: FloatGraph,
    converted: Converted,
    blocked: Mapping[str, str],
    exhausted: set[str],
    probes: Sequence[Probe],
    reports: Sequence[ProbeReport],
    min_cosine: float,
    affordable: Callable[[Mapping[str, str], Mapping[str, str]], dict[str, str]],
) -> dict[str, str]:
    """The node that amplifies its inputs' storage error the most (with its inputs' producers),
    among those whose output error is a sizeable part of what the cosine bound allows
    (cosine c between vectors of equal norm <=> relative error sqrt(2 (1 - c))), on the
    probe whose check fails worst."""
    significant_error = SIGNIFICANT_ERROR_SHARE * float(np.sqrt(2.0 * (1.0 - min_cosine)))
    failing = [i for i, r in enumerate(reports) if r.errors]
    if not failing:
        return {}
    i = min(
        failing, key=lambda i: (reports[i].check.finite, np.nan_to_num(reports[i].check.cosine))
    )
    label, error, flips = probes[i].label, reports[i].errors, reports[i].flips
    candidates = []  # (-amplification, graph order, node, detail)
    for node in converted.model.graph.node:
        if node.name not in graph.node_by_name or node.name in exhausted:
            continue
        if any(flips.get(t, 0.0) > 0.0 for t in node.input):
            continue  # reads a flipped decision: the flip upstream is to blame
        flipped = max([flips[o] for o in node.output if o in flips], default=0.0)
        if flipped > 0.0:
            detail = f"{flipped:.1%} of its {node.op_type} decisions flip at {label}"
            candidates.append(
                (-flipped / FP16_UNIT_ROUNDOFF, graph.order[node.name], node.name, detail)
            )
            continue
        outputs = [o for o in node.output if o in error]
        if not outputs:
            continue
        error_out = max(error[o] for o in outputs)
        error_in = max([error.get(t, 0.0) for t in node.input if t], default=0.0)
        amplification = error_out / max(error_in, FP16_UNIT_ROUNDOFF)
        if amplification >= AMPLIFICATION_MIN and error_out >= significant_error:
            detail = f"x{amplification:.0f} at {label}, relative error {error_out:.2g}"
            candidates.append((-amplification, graph.order[node.name], node.name, detail))
    for _, _, name, detail in sorted(candidates):
        if name in exhausted:
            continue
        additions = affordable(
            blocked,
            with_input_producers(
                graph,
                blocked,
                name,
                f"precision: amplifies the float16 rounding of its inputs ({detail})",
                f"precision: feeds {name}, which amplifies its inputs' float16 rounding ({detail})",
            ),
        )
        if additions:
            return additions
        exhausted.add(name)
    return {}


# ----------------------------------------------------------------------------- islands


def with_input_producers(
    graph: FloatGraph,
    blocked: Mapping[str, str],
    name: str,
    node_reason: str,
    producer_reason: str,
) -> dict[str, str]:
    """``name`` plus the producers of its float16 inputs (through data movement); if it is
    already float32 with float32 inputs, the next float16 producers upstream of its island."""
    additions: dict[str, str] = {}
    if name not in blocked:
        additions[name] = node_reason

    def walk(start: list[str], through_islands: bool) -> None:
        queue, seen = list(start), set()
        while queue:
            tensor = queue.pop(0)
            if tensor in seen or tensor not in graph.producer:
                continue
            seen.add(tensor)
            producer = graph.producer[tensor]
            inputs = [t for t in producer.input if graph.is_float(t)]
            if producer.name in blocked or producer.name in additions:
                if through_islands:
                    queue.extend(inputs)
                continue
            additions[producer.name] = producer_reason
            if producer.op_type in DATA_MOVEMENT_OPS:
                queue.extend(inputs)

    start = [t for t in graph.node_by_name[name].input if graph.is_float(t)]
    walk(start, through_islands=False)
    if not additions:
        walk(start, through_islands=True)
    return additions


def islands(graph: FloatGraph, fp32_nodes: Iterable[str]) -> list[list[str]]:
    """Float32 nodes grouped by the tensors they pass each other, each group in graph order."""
    members = set(fp32_nodes)
    group = {name: name for name in members}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for name in members:
        for tensor in graph.node_by_name[name].input:
            producer = graph.producer.get(tensor)
            if producer is not None and producer.name in members:
                group[root(name)] = root(producer.name)
    grouped: dict[str, list[str]] = defaultdict(list)
    for name in sorted(members, key=graph.order.__getitem__):
        grouped[root(name)].append(name)
    return sorted(grouped.values(), key=lambda island: graph.order[island[0]])
