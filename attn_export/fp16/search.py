"""The island search: fp32 islands chosen on tuning draws, the verdict taken on check draws."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import UsageError
from . import decisions
from .convert import Converted, convert, fp16_weight_fraction, weight_elements
from .draws import DrawsArgument, Probe, check_seeds, probes, resolve_draws, tuning_seeds
from .graph import ALWAYS_FP32_OPS, FLOAT, FloatGraph
from .islands import (
    first_non_finite,
    growth_overflow,
    islands,
    overflow_island,
    precision_additions,
    with_input_producers,
)
from .observe import ProbeReport, observe, peaks
from .result import DEFAULT_MIN_COSINE, MIN_FP16_WEIGHT_FRACTION, Fp16Check, Fp16Result, check
from .simulate import Session, simulation_model

# Input scales every draw is checked at: x10 and x100 reach the overflow that unit draws hide.
DEFAULT_SCALES = (1.0, 10.0, 100.0)
DEFAULT_MAX_ROUNDS = 40
LISTED_FAILURES = 3  # failing tuning checks a stop reason names (the rest are alike)


def convert_to_fp16(
    model: onnx.ModelProto,
    tuning: DrawsArgument = None,
    checks: DrawsArgument = None,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    min_cosine: float = DEFAULT_MIN_COSINE,
    seed: int = 0,
    fp32_nodes: Iterable[str] = (),
    max_rounds: int = DEFAULT_MAX_ROUNDS,
) -> Fp16Result:
    """Convert an fp32 graph to fp16 with fp32 islands chosen by the storage simulation.

    ``tuning``: the draws the island search sees (default: ``DEFAULT_TUNING_DRAWS``
    standard-normal draws from seeds ``seed``, ``seed + 1``, ...); ``checks``: the draws the
    verdict comes from (default: as many from seeds ``seed + 1000``, ...). Each draw is
    multiplied by each of ``scales``. Graphs with symbolic input dims need both given.
    ``fp32_nodes`` forces nodes into fp32 from the start. The search stops when every tuning
    check passes and no decision is at risk, when no node can be blocked any more, or after
    ``max_rounds`` rounds; the result says which and never raises for a failed check.
    """
    graph = FloatGraph(model)
    fp32_nodes = list(fp32_nodes)
    unknown = sorted(set(fp32_nodes) - set(graph.node_by_name))
    if unknown:
        raise UsageError(f"fp32_nodes not in the graph: {', '.join(unknown)}")
    if not scales or any(not (np.isfinite(s) and s > 0) for s in scales):
        raise UsageError(f"scales must be finite and positive, got {list(scales)}")
    tuning_draws = resolve_draws(graph, tuning, tuning_seeds(seed), "tuning")
    check_draws = resolve_draws(graph, checks, check_seeds(seed), "check")

    blocked = _initially_blocked(graph, fp32_nodes)
    search = _Search(graph, probes(tuning_draws, scales), min_cosine, MIN_FP16_WEIGHT_FRACTION)
    last, rounds, added_in_round, stop_reason = search.run(blocked, max_rounds)

    onnx.checker.check_model(last.converted.model, full_check=True)
    fp16_elements, fp32_elements = weight_elements(graph, blocked)
    return Fp16Result(
        model=last.converted.model,
        fp32_nodes=[
            {
                "name": name,
                "op_type": graph.node_by_name[name].op_type,
                "reason": blocked[name],
                "round": added_in_round.get(name, 0),
            }
            for name in sorted(blocked, key=graph.order.__getitem__)
        ],
        fp16_weight_fraction=fp16_weight_fraction(graph, blocked),
        checks=search.judge(last.session, probes(check_draws, scales)),
        tuning=last.checks,
        tuning_draws=[d.label for d in tuning_draws],
        check_draws=[d.label for d in check_draws],
        scales=[float(s) for s in scales],
        min_cosine=min_cosine,
        islands=islands(graph, blocked),
        rounds=rounds,
        stop_reason=stop_reason,
        notes=search.notes,
        weight_elements={"float16": fp16_elements, "float32": fp32_elements},
    )


def _initially_blocked(graph: FloatGraph, fp32_nodes: Iterable[str]) -> dict[str, str]:
    """The nodes float32 from the start (name -> reason): the caller's, and the ops that must
    stay float32."""
    blocked: dict[str, str] = {name: "requested" for name in fp32_nodes}
    for node in graph.model.graph.node:
        if node.op_type in ALWAYS_FP32_OPS and graph.touches_float(node):
            blocked.setdefault(
                node.name, f"{node.op_type} stays float32 (dtype attribute / TensorRT types)"
            )
    return blocked


@dataclass
class _Round:
    """One round's fp16 graph and what the simulation of the tuning probes says about it."""

    converted: Converted
    session: Session  # the simulation of this round's fp16 graph
    reports: list[ProbeReport]  # per tuning probe
    broken: tuple[str, int] | None  # a tensor float16 could hold, made non-finite
    risks: list[decisions.Risk]  # decisions at risk that the search can still act on

    @property
    def checks(self) -> list[Fp16Check]:
        return [r.check for r in self.reports]


class _Search:
    """Rounds of: convert, simulate every tuning probe, move the nodes a rule names to fp32."""

    def __init__(
        self,
        graph: FloatGraph,
        tuning_probes: list[Probe],
        min_cosine: float,
        min_weight_fraction: float,
    ) -> None:
        self.graph = graph
        self.probes = tuning_probes
        self.min_cosine = min_cosine
        self.min_weight_fraction = min_weight_fraction
        self.reference = Session(graph.model, graph.observed_tensors())
        self.peaks: list[dict[str, float]] = []  # per probe, from the first round
        self.exhausted: set[str] = set()  # nodes whose island cannot grow any further
        self.notes: list[str] = []  # what the search left as it is, and why

    def run(
        self, blocked: dict[str, str], max_rounds: int
    ) -> tuple[_Round, int, dict[str, int], str]:
        """Rounds until nothing is wrong on the tuning probes or nothing more can be done;
        ``blocked`` grows in place. Returns the last round, the number of rounds that moved
        nodes, the round each node moved in, and why the search stopped ("" when it passed)."""
        added_in_round: dict[str, int] = {}
        rounds, stop_reason = 0, ""
        while True:
            first = not self.peaks
            state = self.round(blocked)
            if first and max_rounds > 0:  # the growth rule needs the fp32 peaks, known now
                growth = growth_overflow(self.graph, self.probes, self.peaks)
                if set(growth) - set(blocked):
                    blocked.update({k: v for k, v in growth.items() if k not in blocked})
                    continue
            problems = self.problems(state)
            if not problems:
                break
            if rounds >= max_rounds:
                stop_reason = f"search stopped after {max_rounds} rounds ({problems})"
                break
            additions = self.next_fp32_nodes(state, blocked)
            if not additions:
                stop_reason = f"no node left whose move to float32 could help ({problems})"
                break
            rounds += 1
            blocked.update(additions)
            added_in_round.update({name: rounds for name in additions})
        return state, rounds, added_in_round, stop_reason

    def round(self, blocked: Mapping[str, str]) -> _Round:
        """Convert, then run the fp32 and the simulated graph on one probe at a time: every
        intermediate tensor of one probe is in memory at once, never all probes'."""
        graph = self.graph
        converted = convert(graph, blocked)
        observed: dict[str, int] = {name: FLOAT for name in converted.float_tensors}
        observed.update({name: graph.elem_types[name] for name in graph.decision_outputs()})
        session = Session(simulation_model(converted.model, converted.types), observed)
        reports = []
        first = not self.peaks
        for probe in self.probes:
            reference = self.reference.run([probe.feeds])[0]
            if first:
                self.peaks.append(peaks(graph, reference))
            simulation = session.run([probe.feeds])[0]
            reports.append(observe(graph, converted, probe, reference, simulation, self.min_cosine))
        judged = [i for i, r in enumerate(reports) if r.check.reference_finite]
        broken = first_non_finite(converted, reports, judged, True)
        risks = decisions.risks(graph, [r.risks for r in reports])
        risks = [r for r in risks if r.node not in self.exhausted]
        return _Round(converted, session, reports, broken, risks)

    def judge(self, simulation_session: Session, check_probes: Sequence[Probe]) -> list[Fp16Check]:
        """A round's fp16 graph (its simulation) against the fp32 graph on probes the search
        never saw."""
        outputs = self.graph.output_names
        checks = []
        for probe in check_probes:
            reference = self.reference.run([probe.feeds], outputs)[0]
            simulation = simulation_session.run([probe.feeds], outputs)[0]
            checks.append(
                check(
                    probe.scale,
                    [reference[o] for o in outputs],
                    [simulation[o] for o in outputs],
                    self.min_cosine,
                    probe.draw,
                )
            )
        return checks

    def problems(self, state: _Round) -> str:
        """What is still wrong on the tuning probes, in a few words ("" when nothing is)."""
        failing = [c for c in state.checks if not c.passed]
        problems = [f"tuning {c.problem()}" for c in failing[:LISTED_FAILURES]]
        if state.broken is not None:
            tensor, i = state.broken
            problems.append(f"{tensor} non-finite at {self.probes[i].label}")
        problems += [f"{r.node} ({r.op_type}) at risk" for r in state.risks]
        return "; ".join(problems)

    def next_fp32_nodes(self, state: _Round, blocked: Mapping[str, str]) -> dict[str, str]:
        """The nodes to move to float32 next (name -> reason), or {} when nothing is left to try.

        In this order: an overflow, the decisions at risk (all of them), the precision culprit.
        """
        graph, converted, reports = self.graph, state.converted, state.reports
        failing = [
            i for i, r in enumerate(reports) if r.check.reference_finite and not r.check.passed
        ]
        broken = state.broken or first_non_finite(converted, reports, failing, False)
        if broken is not None:
            tensor, i = broken
            overflow = overflow_island(
                graph, converted, blocked, tensor, self.probes[i], self.peaks[i], reports[i].broken
            )
            if overflow:
                return overflow
        additions: dict[str, str] = {}
        for risk in state.risks:
            wanted = with_input_producers(
                graph,
                {**blocked, **additions},
                risk.node,
                f"decision: {risk.detail()}",
                f"decision: feeds {risk.node} ({risk.op_type}), at risk: {risk.detail()}",
            )
            found = self.affordable({**blocked, **additions}, wanted)
            if not found:
                self.exhausted.add(risk.node)
                self.note(f"{risk.node} ({risk.op_type}) left at risk: {risk.detail()}")
            additions.update(found)
        if additions:
            return additions
        return precision_additions(
            graph,
            converted,
            blocked,
            self.exhausted,
            self.probes,
            reports,
            self.min_cosine,
            self.affordable,
        )

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def affordable(
        self, blocked: Mapping[str, str], additions: Mapping[str, str]
    ) -> dict[str, str]:
        """The additions (graph order) that keep the float16 weight share at its floor: the
        search never trades that floor for precision (overflow it does fix)."""
        kept: dict[str, str] = {}
        fraction = fp16_weight_fraction(self.graph, blocked)
        for name in sorted(additions, key=self.graph.order.__getitem__):
            trial = fp16_weight_fraction(self.graph, [*blocked, *kept, name])
            if trial >= min(fraction, self.min_weight_fraction):
                kept[name], fraction = additions[name], trial
            else:
                self.note(
                    f"{name} left in float16: float32 would leave {trial:.0%} of the weights"
                    f" in float16 (floor {self.min_weight_fraction:.0%})"
                )
        return kept
