"""The fp16 ONNX graph for strongly typed TensorRT, and a CPU check that judges it like a GPU.

TensorRT 11 builds strongly typed networks only: the precision of every layer is the type
of its ONNX tensors, so an fp16 engine needs an fp16 graph. :func:`convert_to_fp16` writes
one: weights and activations in float16, graph inputs and outputs in float32 (a Cast at
each edge), and the nodes fp16 would break kept in float32 between Cast nodes ("fp32
islands").

Why a simulation: ONNX Runtime's CPU provider has no float16 kernels for most ops; it
casts their inputs to float32 and drops the Cast pairs between neighbouring upcast nodes,
so an fp16 graph there runs almost entirely in float32 and hides overflow (seen: ``simam``
at inputs x100 overflows with float16 storage, yet its fp16 graph on ORT CPU returns
finite values). :func:`simulate_fp16_storage` models a GPU instead: fp32 arithmetic
inside each node, every float16 tensor rounded to float16 between nodes (each float16
output gets a Cast(FLOAT16) + Cast(FLOAT) pair in an fp32 copy of the graph, run with
graph optimisations off so the pairs stay).

How the islands are chosen (deterministic; each node records its reason and round):
convert everything, simulate at input scales 1, 10 and 100 (a fixed-seed standard
normal draw, scaled) with every intermediate tensor observed, compare with the fp32
graph on the same inputs, and while something is wrong, move nodes to float32:

1. overflow: the first tensor (graph order) whose fp32 values float16 could hold but
   which the simulation made non-finite, even if the output check passed (a saturating
   Sigmoid can hide it): its producer and, walking back along the non-finite tensors,
   every producer of the overflow that reaches it. For a failing check with no such
   tensor, the first non-finite tensor; at an island's edge (a Cast into float16 of a
   value beyond 65504) the readers of that value join the island. Infinities that break
   nothing (a -1e30 mask stored as -inf before a Softmax) are left alone.
2. precision (a check's cosine is low): the node that amplifies the float16 rounding of
   its inputs the most (``rel_err(output) / max(rel_err(inputs), 2**-11)``, for outputs
   with a sizeable error; a flipped TopK/ArgMax/comparison counts as flips / 2**-11)
   joins with the producers of its float16 inputs (through data-movement ops), since it
   is their rounding it amplifies (cancellation before a normalisation, large softmax
   logits, near-ties in TopK). A node already in an island with float32 inputs extends
   the island one producer layer upstream.

No external converter is used: onnxconverter-common 1.16's ``convert_float_to_float16``
clamps weights to +-1e4 (65504 is float16's limit), leaves a graph output float16 despite
``keep_io_types`` when a blocked node produces it, and writes an invalid graph when a
blocked node shares an initializer with an fp16 node (all three checked). Here every
float input of a node is cast to that node's precision, so the graph is typed correctly
by construction (``onnx.checker`` and strict shape inference verify it).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .compare import cosine_similarity
from .errors import UsageError

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
FP16_MAX = 65504.0
FP16_UNIT_ROUNDOFF = 2.0**-11  # relative error of one rounding to float16
DEFAULT_SCALES = (1.0, 10.0, 100.0)
DEFAULT_MIN_COSINE = 0.999
MIN_FP16_WEIGHT_FRACTION = 0.5
DEFAULT_MAX_ROUNDS = 40

# Whose float output type comes from an attribute we would have to rewrite; rare in our graphs.
ALWAYS_FP32_OPS = frozenset(
    {
        "EyeLike",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Bernoulli",
        "Multinomial",
        "STFT",
    }  # STFT: TensorRT accepts FP32 only
)
# Inputs whose element type is fixed to float32 by the ONNX schema, whatever the data type.
FP32_ONLY_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
# Ops that read any element type at this input (no cast needed).
TYPE_AGNOSTIC_INPUTS = {("Shape", 0), ("Size", 0), ("Cast", 0), ("CastLike", 0)}
# Ops that move or select values without arithmetic: blocking one removes no rounding of its
# own, so the search walks through them to the producer that computes.
DATA_MOVEMENT_OPS = frozenset(
    {
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Flatten",
        "Identity",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Concat",
        "Split",
        "Expand",
        "Tile",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
        "Cast",
    }
)
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
DECISION_TYPES = frozenset(
    {
        TensorProto.BOOL,
        TensorProto.INT64,
        TensorProto.INT32,
        TensorProto.INT16,
        TensorProto.INT8,
        TensorProto.UINT8,
    }
)
# A precision culprit magnifies its inputs' rounding error at least this much, and its output
# error reaches this share of the error the cosine bound allows.
AMPLIFICATION_MIN = 4.0
SIGNIFICANT_ERROR_SHARE = 0.25


@dataclass
class Fp16Check:
    """The simulated fp16 graph against the fp32 graph at one input scale."""

    scale: float
    cosine: float
    max_abs_err: float
    finite: bool
    passed: bool
    reference_finite: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return {
            "scale": self.scale,
            "cosine": _json_float(self.cosine),
            "max_abs_err": _json_float(self.max_abs_err),
            "finite": self.finite,
            "reference_finite": self.reference_finite,
            "passed": self.passed,
        }

    def problem(self) -> str:
        if not self.reference_finite:
            return f"x{self.scale:g}: the fp32 reference itself is non-finite"
        if not self.finite:
            return f"x{self.scale:g}: non-finite output"
        return f"x{self.scale:g}: cosine {self.cosine:.6f}"


@dataclass
class Fp16Result:
    """The fp16 graph, its fp32 islands and the storage check that chose them."""

    model: onnx.ModelProto
    fp32_nodes: List[Dict[str, Any]]  # {name, op_type, reason, round}, in graph order
    fp16_weight_fraction: float
    checks: List[Fp16Check]
    min_cosine: float = DEFAULT_MIN_COSINE
    min_weight_fraction: float = MIN_FP16_WEIGHT_FRACTION
    islands: List[List[str]] = field(default_factory=list)  # connected groups of fp32_nodes
    rounds: int = 0
    stop_reason: str = ""
    weight_elements: Dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            bool(self.checks)
            and all(c.passed for c in self.checks)
            and (self.fp16_weight_fraction >= self.min_weight_fraction)
        )

    @property
    def reason(self) -> str:
        """Why it failed, in one line ("" when it passed)."""
        problems = [c.problem() for c in self.checks if not c.passed]
        if self.fp16_weight_fraction < self.min_weight_fraction:
            problems.append(
                f"only {self.fp16_weight_fraction:.1%} of the float weights are float16"
                f" (need {self.min_weight_fraction:.0%})"
            )
        if problems and self.stop_reason:
            problems.append(self.stop_reason)
        return "; ".join(problems)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "method": "fp16 storage simulation (fp32 math per node, float16 rounding between nodes)"
            " vs the fp32 graph on ONNX Runtime CPU, standard-normal inputs scaled by each scale",
            "min_cosine": self.min_cosine,
            "min_fp16_weight_fraction": self.min_weight_fraction,
            "fp16_weight_fraction": round(self.fp16_weight_fraction, 6),
            "weight_elements": dict(self.weight_elements),
            "fp32_nodes": [dict(n) for n in self.fp32_nodes],
            "islands": [list(i) for i in self.islands],
            "rounds": self.rounds,
            "search_stop": self.stop_reason or "all checks pass",
            "checks": [c.to_dict() for c in self.checks],
        }


# ----------------------------------------------------------------------------- public API


def convert_to_fp16(
    model: onnx.ModelProto,
    feeds_fp32: Optional[Mapping[str, np.ndarray]] = None,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    min_cosine: float = DEFAULT_MIN_COSINE,
    seed: int = 0,
    fp32_nodes: Iterable[str] = (),
    max_rounds: int = DEFAULT_MAX_ROUNDS,
) -> Fp16Result:
    """Convert an fp32 graph to fp16 with fp32 islands chosen by the storage simulation.

    ``feeds_fp32`` are the unit-scale inputs (default: standard normal from ``seed`` at the
    graph's static input shapes); each check multiplies them by one of ``scales``.
    ``fp32_nodes`` forces nodes into fp32 from the start. The search stops when every check
    passes, when no node can be blocked any more, or after ``max_rounds`` rounds; the result
    says which (``passed``, ``reason``) and never raises for a failed check.
    """
    graph = _FloatGraph(model)
    fp32_nodes = list(fp32_nodes)
    unknown = sorted(set(fp32_nodes) - set(graph.node_by_name))
    if unknown:
        raise UsageError(f"fp32_nodes not in the graph: {', '.join(unknown)}")
    base_feeds = graph.feeds(feeds_fp32) if feeds_fp32 is not None else graph.random_feeds(seed)
    scaled_feeds = [
        {k: v * np.float32(s) if v.dtype == np.float32 else v for k, v in base_feeds.items()}
        for s in scales
    ]
    references = [
        {**feeds, **values}
        for feeds, values in zip(
            scaled_feeds, _run(graph.model, scaled_feeds, graph.observed_tensors()), strict=True
        )
    ]

    # node -> why it is float32
    blocked: Dict[str, str] = {name: "requested" for name in fp32_nodes}
    added_in_round: Dict[str, int] = {}
    for node in graph.model.graph.node:
        if node.op_type in ALWAYS_FP32_OPS and graph.touches_float(node):
            blocked.setdefault(
                node.name, f"{node.op_type} stays float32 (dtype attribute / TensorRT types)"
            )
    exhausted: Set[str] = set()
    stop_reason = ""
    rounds = 0
    while True:
        converted = _convert(graph, blocked)
        simulation = _simulation_model(converted.model, converted.types)
        observed = {name: FLOAT for name in converted.float_tensors}
        observed.update({name: graph.elem_types[name] for name in graph.decision_outputs()})
        simulated = _run(simulation, scaled_feeds, observed)
        checks = [
            _check(
                scale,
                [ref[o] for o in graph.output_names],
                [sim[o] for o in graph.output_names],
                min_cosine,
            )
            for scale, ref, sim in zip(scales, references, simulated, strict=True)
        ]
        judged = [i for i, c in enumerate(checks) if c.reference_finite]  # else fp16 cannot help
        broken = _first_non_finite(
            converted, references, simulated, judged, representable_only=True
        )
        if all(c.passed for c in checks) and broken is None:
            break
        if rounds >= max_rounds:
            stop_reason = f"search stopped after {max_rounds} rounds"
            break
        if all(c.passed for c in checks):  # but a tensor float16 could hold is non-finite
            stop_reason = f"checks pass; {broken[0]} is still non-finite at x{scales[broken[1]]:g}"
        additions = _next_fp32_nodes(
            graph, converted, blocked, exhausted, scales, checks, references, simulated, min_cosine
        )
        if not additions:
            stop_reason = "no node left whose move to float32 could help"
            break
        rounds += 1
        blocked.update(additions)
        added_in_round.update({name: rounds for name in additions})

    onnx.checker.check_model(converted.model, full_check=True)
    fp16_elements, fp32_elements = _weight_elements(
        converted.model, graph.non_weight_initializers()
    )
    total = fp16_elements + fp32_elements
    return Fp16Result(
        model=converted.model,
        fp32_nodes=[
            {
                "name": name,
                "op_type": graph.node_by_name[name].op_type,
                "reason": blocked[name],
                "round": added_in_round.get(name, 0),
            }
            for name in sorted(blocked, key=graph.order.__getitem__)
        ],
        islands=_islands(graph, blocked),
        fp16_weight_fraction=fp16_elements / total if total else 1.0,
        checks=checks,
        min_cosine=min_cosine,
        rounds=rounds,
        stop_reason=stop_reason,
        weight_elements={"float16": fp16_elements, "float32": fp32_elements},
    )


def simulate_fp16_storage(
    model_fp16: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> List[np.ndarray]:
    """Run an fp16 graph as a GPU stores it: fp32 math per node, float16 between nodes.

    Returns the graph outputs as float32 arrays (float16 outputs are returned upcast).
    Float16 inputs may be fed as float32 or float16.
    """
    missing = [v.name for v in model_fp16.graph.input if v.name not in feeds]
    initializer_names = {i.name for i in model_fp16.graph.initializer}
    missing = [name for name in missing if name not in initializer_names]
    if missing:
        raise UsageError(f"feeds lack graph inputs: {', '.join(missing)}")
    simulation = _simulation_model(model_fp16)
    float16_inputs = {
        v.name for v in model_fp16.graph.input if v.type.tensor_type.elem_type == FLOAT16
    }
    feeds32 = {}
    for name, value in feeds.items():
        value = np.asarray(value)
        if name in float16_inputs:  # the GPU receives float16: round float32 feeds first
            value = value.astype(np.float16).astype(np.float32)
        feeds32[name] = value
    values = _run(simulation, [feeds32], {})[0]
    return [values[o.name] for o in model_fp16.graph.output]


# ----------------------------------------------------------------------------- graph facts


class _FloatGraph:
    """The fp32 graph, normalised once (named nodes, no float Constant nodes), with its types."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = _normalised(model)
        graph = self.model.graph
        for node in graph.node:
            if node.op_type in CONTROL_FLOW_OPS:
                raise UsageError(
                    f"fp16 conversion does not handle control flow ({node.op_type} {node.name})"
                )
        self.elem_types = _elem_types(self.model)
        self.initializers = {i.name: i for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in self.initializers]
        self.output_names = [o.name for o in graph.output]
        self.node_by_name = {n.name: n for n in graph.node}
        self.order = {n.name: i for i, n in enumerate(graph.node)}
        self.producer: Dict[str, onnx.NodeProto] = {o: n for n in graph.node for o in n.output if o}
        self._rounding_errors: Dict[str, float] = {}
        self._fp16_initializers: Dict[str, onnx.TensorProto] = {}

    def is_float(self, tensor: str) -> bool:
        return bool(tensor) and self.elem_types.get(tensor) == FLOAT

    def touches_float(self, node: onnx.NodeProto) -> bool:
        return any(self.is_float(t) for t in [*node.input, *node.output])

    def non_weight_initializers(self) -> Set[str]:
        """Float initializers read only at schema-typed inputs (never a precision choice)."""
        data_reads = {
            t
            for n in self.model.graph.node
            for i, t in enumerate(n.input)
            if (n.op_type, i) not in FP32_ONLY_INPUTS and (n.op_type, i) not in TYPE_AGNOSTIC_INPUTS
        }
        return {
            name for name in self.initializers if self.is_float(name) and name not in data_reads
        }

    def fp16_initializer(self, name: str) -> onnx.TensorProto:
        """The float16 copy of an initializer (cached: the search converts the graph many times)."""
        if name not in self._fp16_initializers:
            array = numpy_helper.to_array(self.initializers[name])
            # Beyond 65504 becomes inf, as on the GPU; the simulation sees it.
            with np.errstate(over="ignore"):
                self._fp16_initializers[name] = numpy_helper.from_array(
                    array.astype(np.float16), name
                )
        return self._fp16_initializers[name]

    def fp16_rounding_error(self, initializer: str) -> float:
        if initializer not in self._rounding_errors:
            array = numpy_helper.to_array(self.initializers[initializer])
            with np.errstate(over="ignore"):
                self._rounding_errors[initializer] = _relative_error(
                    array.astype(np.float16), array
                )
        return self._rounding_errors[initializer]

    def observed_tensors(self) -> Dict[str, int]:
        """What the search compares: every float node output and every decision (name -> type)."""
        observed = {o: FLOAT for n in self.model.graph.node for o in n.output if self.is_float(o)}
        observed.update({o: self.elem_types[o] for o in self.decision_outputs()})
        return observed

    def decision_outputs(self) -> List[str]:
        """Integer/bool outputs computed from floats (TopK indices, ArgMax, comparisons, float->int
        Cast): rounding can flip them, and a flip is a discrete error no relative error shows."""
        return [
            o
            for n in self.model.graph.node
            if n.op_type not in ("Shape", "Size") and any(self.is_float(t) for t in n.input)
            for o in n.output
            if o and self.elem_types.get(o) in DECISION_TYPES
        ]

    def random_feeds(self, seed: int) -> Dict[str, np.ndarray]:
        generator = np.random.default_rng(seed)
        feeds = {}
        for value in self.model.graph.input:
            if value.name in self.initializers:
                continue
            tensor_type = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor_type.shape.dim]
            if tensor_type.elem_type != FLOAT or any(d <= 0 for d in dims):
                raise UsageError(
                    f"input {value.name!r} is not a static float32 tensor;"
                    " pass feeds_fp32 to convert_to_fp16"
                )
            feeds[value.name] = generator.standard_normal(dims, dtype=np.float32)
        return feeds

    def feeds(self, given: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The graph's inputs from ``given``, floating-point ones as float32 (those get scaled)."""
        missing = [n for n in self.input_names if n not in given]
        if missing:
            raise UsageError(f"feeds lack graph inputs: {', '.join(missing)}")
        arrays = {n: np.asarray(given[n]) for n in self.input_names}
        return {n: a.astype(np.float32) if a.dtype.kind == "f" else a for n, a in arrays.items()}


def _normalised(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with unique node names, float Constant nodes turned into initializers, and
    initializers not repeated as graph inputs.

    Names: the manifest lists islands by node name. Constants: an initializer can be stored
    in whichever precision its consumers need, a Constant node cannot without a Cast.
    """
    model = copy.deepcopy(model)
    graph = model.graph
    initializer_names = {i.name for i in graph.initializer}
    graph_inputs = [v for v in graph.input if v.name not in initializer_names]  # IR >= 4 style
    del graph.input[:]
    graph.input.extend(graph_inputs)
    used: Set[str] = set()
    kept: List[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant" and not node.domain:
            tensor = _float_constant_value(node)
            if tensor is not None:
                graph.initializer.append(numpy_helper.from_array(tensor, node.output[0]))
                continue
        name = node.name or f"{node.op_type}_{index}"
        while name in used:
            name = f"{name}_{index}"
        node.name = name
        used.add(name)
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _float_constant_value(node: onnx.NodeProto) -> Optional[np.ndarray]:
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.t.data_type == FLOAT:
            return numpy_helper.to_array(attribute.t)
        if attribute.name == "value_float":
            return np.array(attribute.f, np.float32)
        if attribute.name == "value_floats":
            return np.array(list(attribute.floats), np.float32)
    return None


def _elem_types(model: onnx.ModelProto, strict: bool = True) -> Dict[str, int]:
    """Element type of every tensor, by shape inference on the graph without its weight data.

    Initializers become typed graph inputs in the copy that is inferred, so megabytes of
    weights are not serialised for it. Strict: our graphs are static and fully typed.
    """
    graph = model.graph
    initializer_names = {i.name for i in graph.initializer}
    skeleton = helper.make_graph(
        list(graph.node),
        graph.name,
        [v for v in graph.input if v.name not in initializer_names]
        + [
            helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
            for i in graph.initializer
        ],
        list(graph.output),
    )
    skeleton_model = helper.make_model(
        skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    inferred = onnx.shape_inference.infer_shapes(skeleton_model, strict_mode=strict)
    types = _declared_types(inferred)
    missing = [o for n in inferred.graph.node for o in n.output if o and not types.get(o)]
    if missing:
        raise UsageError(f"shape inference left tensor types unknown: {', '.join(missing[:5])}")
    return types


# ----------------------------------------------------------------------------- conversion


@dataclass
class _Converted:
    model: onnx.ModelProto
    origin: Dict[str, str]  # tensor in the fp16 graph -> tensor of the fp32 graph it carries
    home: Dict[str, int]  # fp32-graph float tensor -> FLOAT or FLOAT16 as produced
    float_tensors: List[str]  # every float node output of the fp16 graph (for intermediate checks)
    types: Dict[str, int]  # element type of every tensor of the fp16 graph
    cast_consumers: Dict[str, List[str]]  # output of an inserted Cast -> original nodes reading it


def _required_type(node: onnx.NodeProto, index: int, precision: int) -> Optional[int]:
    if (node.op_type, index) in TYPE_AGNOSTIC_INPUTS:
        return None
    if (node.op_type, index) in FP32_ONLY_INPUTS:
        return FLOAT
    return precision


def _convert(graph: _FloatGraph, fp32_nodes: Mapping[str, str]) -> _Converted:
    """The fp16 graph with ``fp32_nodes`` in float32; every float input cast to its node's type."""
    src = graph.model.graph
    precision = {n.name: FLOAT if n.name in fp32_nodes else FLOAT16 for n in src.node}
    home: Dict[str, int] = {name: FLOAT for name in graph.input_names if graph.is_float(name)}
    for node in src.node:
        for output in node.output:
            if graph.is_float(output):
                home[output] = precision[node.name]

    # Initializers: stored in each precision some consumer needs (float16 under the original name).
    needs: Dict[str, Set[Optional[int]]] = defaultdict(set)
    for node in src.node:
        for index, tensor in enumerate(node.input):
            if tensor in graph.initializers and graph.is_float(tensor):
                needs[tensor].add(_required_type(node, index, precision[node.name]))
    initializers: List[onnx.TensorProto] = []
    stored: Dict[Tuple[str, int], str] = {}
    for init in src.initializer:
        if not graph.is_float(init.name):
            initializers.append(init)
            continue
        wanted = needs.get(init.name, {None})
        if FLOAT16 in wanted:
            initializers.append(graph.fp16_initializer(init.name))
            stored[(init.name, FLOAT16)] = init.name
            home[init.name] = FLOAT16
            if FLOAT in wanted:
                fp32_copy = onnx.TensorProto()
                fp32_copy.CopyFrom(init)
                fp32_copy.name = init.name + "/fp32"
                initializers.append(fp32_copy)
                stored[(init.name, FLOAT)] = fp32_copy.name
        else:
            initializers.append(init)
            stored[(init.name, FLOAT)] = init.name
            home[init.name] = FLOAT

    output_rename = {
        name: name + "/fp16"
        for name in graph.output_names
        if home.get(name) == FLOAT16 and name in graph.producer
    }
    origin: Dict[str, str] = {}
    casts: Dict[Tuple[str, int], str] = {}
    cast_consumers: Dict[str, List[str]] = defaultdict(list)
    nodes: List[onnx.NodeProto] = []

    def source(tensor: str, wanted: Optional[int], consumer: str) -> str:
        if tensor in graph.initializers:
            return stored.get((tensor, wanted or home[tensor]), tensor)
        internal = output_rename.get(tensor, tensor)
        if wanted is None or home[tensor] == wanted:
            return internal
        key = (tensor, wanted)
        if key not in casts:
            suffix = "fp16" if wanted == FLOAT16 else "fp32"
            casts[key] = f"{tensor}/{suffix}"
            origin[casts[key]] = tensor
            nodes.append(
                helper.make_node(
                    "Cast", [internal], [casts[key]], name=f"{tensor}/Cast_to_{suffix}", to=wanted
                )
            )
        cast_consumers[casts[key]].append(consumer)
        return casts[key]

    for node in src.node:
        new = copy.deepcopy(node)
        for index, tensor in enumerate(node.input):
            if graph.is_float(tensor):
                new.input[index] = source(
                    tensor, _required_type(node, index, precision[node.name]), node.name
                )
        for index, output in enumerate(node.output):
            new.output[index] = output_rename.get(output, output)
            origin[new.output[index]] = output
        if precision[node.name] == FLOAT16:
            _retype_attributes(new, graph)
        nodes.append(new)
    for name, internal in output_rename.items():
        nodes.append(
            helper.make_node("Cast", [internal], [name], name=f"{name}/Cast_to_fp32", to=FLOAT)
        )
        origin[name] = name

    new_graph = helper.make_graph(
        nodes, src.name, list(src.input), list(src.output), initializers, doc_string=src.doc_string
    )
    model = helper.make_model(
        new_graph,
        opset_imports=list(graph.model.opset_import),
        ir_version=graph.model.ir_version,
        producer_name=graph.model.producer_name,
        producer_version=graph.model.producer_version,
    )
    float_tensors = [o for n in nodes for o in n.output if origin.get(o, o) in home]
    types = dict(graph.elem_types)
    types.update({i.name: i.data_type for i in initializers})
    for node in nodes:
        for output in node.output:
            if output:
                types[output] = home.get(
                    origin.get(output, output), graph.elem_types.get(origin.get(output, output), 0)
                )
    for name in output_rename:
        types[name] = FLOAT
    for (_, wanted), cast in casts.items():
        types[cast] = wanted
    return _Converted(model, origin, home, float_tensors, types, dict(cast_consumers))


def _retype_attributes(node: onnx.NodeProto, graph: _FloatGraph) -> None:
    """Attributes that fix a float output type follow the node into float16."""
    if node.op_type == "Cast":
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == FLOAT:
                attribute.i = FLOAT16
    elif node.op_type == "ConstantOfShape" and graph.is_float(node.output[0]):
        for attribute in node.attribute:
            if attribute.name == "value":
                attribute.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float16))
                )
                return
        node.attribute.append(
            helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float16)))
        )


def _declared_types(model: onnx.ModelProto) -> Dict[str, int]:
    """Element types the graph declares (initializers, inputs, value_info, outputs)."""
    graph = model.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        types[value.name] = value.type.tensor_type.elem_type
    return types


# ----------------------------------------------------------------------------- simulation


def _simulation_model(
    model_fp16: onnx.ModelProto, types: Optional[Mapping[str, int]] = None
) -> onnx.ModelProto:
    """An fp32 copy of ``model_fp16`` that rounds every float16 tensor through a Cast pair.

    ``types``: element types of its tensors when the caller knows them (else inferred).
    """
    types = types if types is not None else _elem_types(model_fp16, strict=False)
    graph = model_fp16.graph
    nodes: List[onnx.NodeProto] = []
    for node in graph.node:
        new = copy.deepcopy(node)
        _upcast_attributes(new)
        rounded = []
        for index, output in enumerate(node.output):
            if output and types[output] == FLOAT16:
                new.output[index] = f"{output}/sim_fp32"
                rounded.append(output)
        nodes.append(new)
        for output in rounded:
            nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{output}/sim_fp32"],
                    [f"{output}/sim_fp16"],
                    name=f"{output}/sim_round",
                    to=FLOAT16,
                )
            )
            nodes.append(
                helper.make_node(
                    "Cast", [f"{output}/sim_fp16"], [output], name=f"{output}/sim_upcast", to=FLOAT
                )
            )
    initializers = [
        numpy_helper.from_array(numpy_helper.to_array(i).astype(np.float32), i.name)
        if i.data_type == FLOAT16
        else i
        for i in graph.initializer
    ]
    inputs = [_as_float32(v) for v in graph.input]
    outputs = [_as_float32(v) for v in graph.output]
    simulation = helper.make_model(
        helper.make_graph(
            nodes, graph.name + "_fp16_storage_simulation", inputs, outputs, initializers
        ),
        opset_imports=list(model_fp16.opset_import),
        ir_version=model_fp16.ir_version,
    )
    return simulation


def _upcast_attributes(node: onnx.NodeProto) -> None:
    """Float16-typed attributes of ``node`` become float32 (the rounding Cast pair follows)."""
    for attribute in node.attribute:
        if (
            attribute.name in ("to", "dtype")
            and attribute.type == onnx.AttributeProto.INT
            and attribute.i == FLOAT16
        ):
            attribute.i = FLOAT
        elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT16:
            attribute.t.CopyFrom(
                numpy_helper.from_array(
                    numpy_helper.to_array(attribute.t).astype(np.float32), attribute.t.name
                )
            )


def _as_float32(value: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    value = copy.deepcopy(value)
    if value.type.tensor_type.elem_type == FLOAT16:
        value.type.tensor_type.elem_type = FLOAT
    return value


def _run(
    model: onnx.ModelProto,
    feeds_list: Sequence[Mapping[str, np.ndarray]],
    extra_outputs: Mapping[str, int],
) -> List[Dict[str, np.ndarray]]:
    """Per feeds: the outputs and ``extra_outputs`` (name -> element type) by name.

    ONNX Runtime CPU. Optimisations off: they would fold the rounding Cast pairs. One
    thread: the same sums in the same order on every run, so the search is deterministic.
    """
    import onnxruntime as ort

    model_with_outputs = onnx.ModelProto()
    model_with_outputs.CopyFrom(model)
    declared = {o.name for o in model.graph.output}
    for name, elem_type in extra_outputs.items():
        if name not in declared:
            model_with_outputs.graph.output.append(
                helper.make_tensor_value_info(name, elem_type, None)
            )
            declared.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model_with_outputs.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    wanted = {i.name for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return [
        dict(zip(names, session.run(names, {k: feeds[k] for k in wanted}), strict=True))
        for feeds in feeds_list
    ]


def _check(
    scale: float, references: Sequence[np.ndarray], outputs: Sequence[np.ndarray], min_cosine: float
) -> Fp16Check:
    finite = all(bool(np.isfinite(o).all()) for o in outputs)
    reference_finite = all(bool(np.isfinite(r).all()) for r in references)
    pairs = list(zip(references, outputs, strict=True))
    cosine = min(cosine_similarity(r, o) for r, o in pairs)
    with np.errstate(invalid="ignore", over="ignore"):
        max_abs = max(
            float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64)), initial=0.0))
            for r, o in pairs
        )
    passed = finite and reference_finite and bool(np.isfinite(cosine)) and cosine >= min_cosine
    return Fp16Check(
        float(scale),
        float(cosine),
        max_abs if np.isfinite(max_abs) else float("inf"),
        finite,
        passed,
        reference_finite,
    )


# ----------------------------------------------------------------------------- island search


def _relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """||actual - reference|| / ||reference|| over the elements finite in both.

    float32 norms (BLAS): this ranks nodes by error, it needs no more than a few digits.
    """
    a = np.asarray(actual, np.float32).ravel()
    r = np.asarray(reference, np.float32).ravel()
    if not (np.isfinite(a).all() and np.isfinite(r).all()):
        ok = np.isfinite(a) & np.isfinite(r)
        a, r = a[ok], r[ok]
    if a.size == 0:
        return 0.0
    norm = float(np.linalg.norm(r))
    difference = float(np.linalg.norm(a - r))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / norm


def _next_fp32_nodes(
    graph: _FloatGraph,
    converted: _Converted,
    blocked: Mapping[str, str],
    exhausted: Set[str],
    scales: Sequence[float],
    checks: Sequence[Fp16Check],
    references: Sequence[Mapping[str, np.ndarray]],
    simulated: Sequence[Mapping[str, np.ndarray]],
    min_cosine: float,
) -> Dict[str, str]:
    """The nodes to move to float32 next (name -> reason), or {} when nothing is left to try."""
    judged = [i for i, c in enumerate(checks) if c.reference_finite]  # else fp16 cannot help
    failing = [i for i in judged if not checks[i].passed]

    # 1. overflow: the first tensor float16 could hold that the simulation made non-finite
    # (an overflow upstream reached it), even if the output check passes (a saturating
    # Sigmoid can hide it); else, for a failing check, the first non-finite tensor (an output
    # or an island's output beyond float16). Benign infinities (a -1e30 mask stored as -inf
    # before a Softmax) are left alone unless they break a value float16 could hold.
    producers = {o: n for n in converted.model.graph.node for o in n.output if o}
    first = _first_non_finite(converted, references, simulated, judged, representable_only=True)
    first = first or _first_non_finite(
        converted, references, simulated, failing, representable_only=False
    )
    if first is not None:
        additions = _overflow_island(
            graph, converted, blocked, producers, *first, references, simulated, scales
        )
        if additions:
            return additions

    # 2. precision: the node that amplifies its inputs' storage error the most, among those
    # whose output error is a sizeable part of what the cosine bound allows
    # (cosine c between vectors of equal norm <=> relative error sqrt(2 (1 - c))).
    # A flipped decision (TopK index, comparison) counts as amplification flipped / 2**-11.
    significant_error = SIGNIFICANT_ERROR_SHARE * float(np.sqrt(2.0 * (1.0 - min_cosine)))
    candidates = []  # (-amplification, graph order, node, scale index, detail)
    for i in failing:
        error = _tensor_errors(graph, converted, references[i], simulated[i])
        flips = {
            t: float(np.mean(simulated[i][t] != references[i][t])) for t in graph.decision_outputs()
        }
        for node in converted.model.graph.node:
            if node.name not in graph.node_by_name or node.name in exhausted:
                continue
            if any(flips.get(t, 0.0) > 0.0 for t in node.input):
                continue  # reads a flipped decision: the flip upstream is to blame
            flipped = max([flips[o] for o in node.output if o in flips], default=0.0)
            if flipped > 0.0:
                detail = f"{flipped:.1%} of its {node.op_type} decisions flip at x{scales[i]:g}"
                candidates.append(
                    (-flipped / FP16_UNIT_ROUNDOFF, graph.order[node.name], node.name, i, detail)
                )
                continue
            outputs = [o for o in node.output if o in error]
            if not outputs:
                continue
            error_out = max(error[o] for o in outputs)
            error_in = max([error.get(t, 0.0) for t in node.input if t], default=0.0)
            amplification = error_out / max(error_in, FP16_UNIT_ROUNDOFF)
            if amplification >= AMPLIFICATION_MIN and error_out >= significant_error:
                detail = f"x{amplification:.0f} at x{scales[i]:g}, relative error {error_out:.2g}"
                candidates.append((-amplification, graph.order[node.name], node.name, i, detail))
    for _, _, name, _, detail in sorted(candidates):
        if name in exhausted:
            continue
        additions = _with_input_producers(
            graph,
            blocked,
            name,
            f"precision: amplifies the float16 rounding of its inputs ({detail})",
            f"precision: feeds {name}, which amplifies its inputs' float16 rounding ({detail})",
        )
        if additions:
            return additions
        exhausted.add(name)
    return {}


def _non_finite_mask(
    converted: _Converted,
    reference: Mapping[str, np.ndarray],
    simulated: Mapping[str, np.ndarray],
    tensor: str,
) -> np.ndarray:
    """Where the simulation is non-finite and the fp32 graph is not."""
    return ~np.isfinite(simulated[tensor]) & np.isfinite(
        reference[converted.origin.get(tensor, tensor)]
    )


def _first_non_finite(
    converted: _Converted,
    references: Sequence[Mapping[str, np.ndarray]],
    simulated: Sequence[Mapping[str, np.ndarray]],
    failing: Sequence[int],
    representable_only: bool,
) -> Optional[Tuple[str, int]]:
    """(tensor, scale index) of the first tensor in graph order that float16 storage broke."""
    for tensor in converted.float_tensors:
        for i in failing:
            mask = _non_finite_mask(converted, references[i], simulated[i], tensor)
            if representable_only:
                with np.errstate(invalid="ignore"):
                    mask &= np.abs(references[i][converted.origin.get(tensor, tensor)]) <= FP16_MAX
            if mask.any():
                return tensor, i
    return None


def _overflow_island(
    graph: _FloatGraph,
    converted: _Converted,
    blocked: Mapping[str, str],
    producers: Mapping[str, onnx.NodeProto],
    tensor: str,
    i: int,
    references: Sequence[Mapping[str, np.ndarray]],
    simulated: Sequence[Mapping[str, np.ndarray]],
    scales: Sequence[float],
) -> Dict[str, str]:
    """Nodes to move to float32 so that ``tensor`` is no longer broken at scale ``i``: its
    producer and, upstream, every producer of the overflowed tensors that reach it."""
    reference, simulation, scale = references[i], simulated[i], scales[i]

    def peak(name: str) -> float:
        values = reference[converted.origin.get(name, name)]
        return float(np.max(np.abs(values[np.isfinite(values)]), initial=0.0))

    if tensor in converted.cast_consumers:  # an island's output that float16 cannot hold
        origin = converted.origin[tensor]
        reason = f"overflow: reads {origin}, which reaches {peak(tensor):.3g} at x{scale:g}"
        return {
            consumer: reason + " (float16 max 65504)"
            for consumer in converted.cast_consumers[tensor]
            if consumer not in blocked
        }
    observed = set(converted.float_tensors)
    additions: Dict[str, str] = {}
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
                    f" at x{scale:g} (float16 max 65504)"
                )
            else:
                additions[node.name] = (
                    f"overflow: its output turns non-finite at x{scale:g} from float16-overflowed"
                    " inputs"
                )
        for name in node.input:  # walk back along the broken tensors (through inserted Casts)
            if name in observed and _non_finite_mask(converted, reference, simulation, name).any():
                queue.append(producers[name])
    if not additions:  # already float32, broken by float16-rounded inputs (a divisor gone to 0)
        name = producers[tensor].name
        if name in graph.node_by_name:
            additions = _with_input_producers(
                graph,
                blocked,
                name,
                "",
                f"non-finite: feeds {name}, whose output turns non-finite at x{scale:g}",
            )
    return additions


def _tensor_errors(
    graph: _FloatGraph,
    converted: _Converted,
    reference: Mapping[str, np.ndarray],
    simulated: Mapping[str, np.ndarray],
) -> Dict[str, float]:
    """Relative error of every float tensor of the fp16 graph against the fp32 graph."""
    error: Dict[str, float] = {}
    for name in converted.float_tensors:
        error[name] = _relative_error(simulated[name], reference[converted.origin.get(name, name)])
    for name in graph.initializers:
        if converted.home.get(name) == FLOAT16:
            error[name] = graph.fp16_rounding_error(name)
    return error


def _with_input_producers(
    graph: _FloatGraph,
    blocked: Mapping[str, str],
    name: str,
    node_reason: str,
    producer_reason: str,
) -> Dict[str, str]:
    """``name`` plus the producers of its float16 inputs (through data movement); if it is
    already float32 with float32 inputs, the next float16 producers upstream of its island."""
    additions: Dict[str, str] = {}
    if name not in blocked:
        additions[name] = node_reason

    def walk(start: List[str], through_islands: bool) -> None:
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


def _islands(graph: _FloatGraph, fp32_nodes: Iterable[str]) -> List[List[str]]:
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
    islands: Dict[str, List[str]] = defaultdict(list)
    for name in sorted(members, key=graph.order.__getitem__):
        islands[root(name)].append(name)
    return sorted(islands.values(), key=lambda island: graph.order[island[0]])


def _weight_elements(model: onnx.ModelProto, non_weights: Set[str]) -> Tuple[int, int]:
    """(float16, float32) element counts of the float initializers that are weights.

    Not weights: scalars, and tensors only read where the schema fixes float32 or reads any
    type (Resize scales, Shape), which no precision choice can move to float16.
    """
    counts = {FLOAT16: 0, FLOAT: 0}
    for init in model.graph.initializer:
        size = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type in counts and size > 1 and init.name not in non_weights:
            counts[init.data_type] += size
    return counts[FLOAT16], counts[FLOAT]


def _json_float(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None
