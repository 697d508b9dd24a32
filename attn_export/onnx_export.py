"""PyTorch -> ONNX (TorchScript or dynamo exporter), then onnxsim, then ``onnx.checker``.

Exporters. ``torchscript`` (``torch.onnx.export(..., dynamo=False)``) traces the module once
and emits plain default-domain ops; it is fast (well under a second per zoo module) and
deterministic. ``dynamo`` captures the module with ``torch.export`` (non-strict) and
translates it with onnxscript; it handles what tracing cannot (e.g. ``unfold`` of a padded
map, "input size not accessible") but needs opset >= 18. ``auto`` tries TorchScript first
and falls back to dynamo, saying why in :attr:`ExportedGraph.fallback`.

Both exporters run with file descriptors 1 and 2 redirected to a temporary file and with
warnings recorded, so nothing they print reaches the terminal: C++ dumps (the ~600-line
TorchScript IR printed on a failure) included. Tracer warnings and warnings raised from
the user's own code come back as one-line :attr:`ExportedGraph.warnings`; a failure is one
:class:`VerificationError` line naming the operator and the user's source line.

Opset: 17 by default. It is the first opset where ``LayerNormalization`` is one node
(NVIDIA's advice for fp16 accuracy in TensorRT), and it lies inside every TensorRT 10.x
parser's documented range (10.0/10.1: 9-20; 10.15+ and 11.x: 9-24). ``--opset`` accepts
the TorchScript exporter's range intersected with TensorRT's (9-20 here: the TorchScript
exporter stops at 20). The dynamo exporter exports at 18 when asked for less (its
down-conversion to 17 leaves invalid graphs, e.g. ``Split`` with ``num_outputs``).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import linecache
import os
import re
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx.inliner
import torch

from .errors import UsageError, VerificationError, first_line
from .options import DEFAULT_OPSET, EXPORTERS, MAX_OPSET, MIN_OPSET

DYNAMO_MIN_OPSET = 18  # the dynamo exporter's lowest opset that gives valid graphs
LABELS = {"torchscript": "TorchScript", "dynamo": "dynamo"}

# onnxsim 0.8's `fuse_qkv` pass rewrites attention patterns into com.microsoft::Attention,
# which ONNX Runtime runs but TensorRT's parser rejects (seen on danet).
SKIPPED_ONNXSIM_PASSES = ["fuse_qkv"]

DynamicAxes = Mapping[str, Mapping[int, str]]  # input name -> {dim: symbol}


@dataclass
class ExportedGraph:
    model: onnx.ModelProto
    nodes_exported: int
    nodes_simplified: int
    opset: int  # the opset the graph was exported at (dynamo raises < 18 to 18)
    exporter: str = "torchscript"  # the exporter that produced the graph
    warnings: list[str] = field(default_factory=list)  # one line each, user's file:line where known
    fallback: str = ""  # why auto left the TorchScript exporter, or empty


def input_names_for(count: int) -> list[str]:
    return [f"input_{i}" for i in range(count)] if count > 1 else ["input"]


def export_to_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str] = ("output",),
    opset: int = DEFAULT_OPSET,
    *,
    exporter: str = "auto",
    dynamic_axes: DynamicAxes | None = None,
) -> ExportedGraph:
    """Export ``module`` at the shapes of ``example_inputs`` (symbolic along ``dynamic_axes``),
    simplify and check it. Raises :class:`VerificationError` (one line) when it cannot."""
    check_arguments(opset, exporter, input_names, dynamic_axes)
    attempt = _Attempt(
        module.eval(),
        tuple(example_inputs),
        list(input_names),
        list(output_names),
        opset,
        dict(dynamic_axes or {}),
    )
    if exporter != "auto":
        return attempt.run(exporter)
    try:
        return attempt.run("torchscript")
    except VerificationError as error:
        why = str(error)
    try:
        graph = attempt.run("dynamo")
    except VerificationError as error:
        raise VerificationError(f"{why}; then {error}") from None
    graph.fallback = why
    return graph


def check_arguments(
    opset: int, exporter: str, input_names: Sequence[str], dynamic_axes: DynamicAxes | None
) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset} is outside the supported range {MIN_OPSET}-{MAX_OPSET}")
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    unknown = sorted(set(dynamic_axes or {}) - set(input_names))
    if unknown:
        raise UsageError(
            f"dynamic axes name unknown inputs {unknown}; the inputs are {list(input_names)}"
        )


@dataclass
class _Attempt:
    """One export request; :meth:`run` tries it with one exporter."""

    module: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    opset: int
    dynamic_axes: dict[str, Mapping[int, str]]

    def run(self, exporter: str) -> ExportedGraph:
        opset = max(self.opset, DYNAMO_MIN_OPSET) if exporter == "dynamo" else self.opset
        notes = opset_notes(self.opset, opset)
        with captured_output(), warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            exported, export_notes = self._export(exporter, opset)
            model = finish_graph(exported, LABELS[exporter])
        check_dynamic_dims(model, self.dynamic_axes, LABELS[exporter])
        notes += export_notes + user_warnings(records)
        return ExportedGraph(
            model, count_nodes(exported), len(model.graph.node), opset, exporter, notes
        )

    def _export(self, exporter: str, opset: int) -> tuple[onnx.ModelProto, list[str]]:
        export = EXPORT_FUNCTIONS[exporter]
        try:
            return export(
                self.module,
                self.inputs,
                self.input_names,
                self.output_names,
                opset,
                self.dynamic_axes,
            )
        except MemoryError:
            raise
        except Exception as error:
            raise VerificationError(failure_line(LABELS[exporter], error)) from None


def opset_notes(requested: int, used: int) -> list[str]:
    if used == requested:
        return []
    return [f"exported at opset {used}, not {requested}: the dynamo exporter needs >= {used}"]


# --- the two exporters: module -> (raw ONNX, notes for the user) -----------------------------


def export_torchscript(
    module, inputs, input_names, output_names, opset, dynamic_axes
) -> tuple[onnx.ModelProto, list[str]]:
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        inputs,
        buffer,  # type: ignore[arg-type]  # torch's annotation omits file objects, which it takes
        dynamo=False,
        opset_version=opset,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes={name: dict(axes) for name, axes in dynamic_axes.items()} or None,
        do_constant_folding=True,
    )
    return onnx.load_from_string(buffer.getvalue()), []


def export_dynamo(
    module, inputs, input_names, output_names, opset, dynamic_axes
) -> tuple[onnx.ModelProto, list[str]]:
    requested = dynamic_shapes(input_names, dynamic_axes)
    program, shapes = capture(module, two_or_more(inputs, input_names, dynamic_axes), requested)
    onnx_program = torch.onnx.export(
        program,
        (),
        dynamo=True,
        opset_version=opset,
        input_names=input_names,
        output_names=output_names,
        dynamic_shapes=shapes,  # only names the symbolic dims after the Dims
        optimize=True,
        verbose=False,
    )
    assert onnx_program is not None  # dynamo=True always returns the program
    model = onnx_program.model_proto
    rename_input_dims(model, dynamic_axes)
    return model, refinement_notes(requested, shapes)


def capture(module, inputs: tuple, shapes: tuple | None) -> tuple[Any, tuple | None]:
    """``torch.export`` (non-strict), called directly rather than through torch.onnx's capture,
    which silently makes a specialised dim static. A constraint violation whose suggested fixes
    keep every marked dim symbolic (a divisibility: ``height = 2*_height``) is retried with them."""
    try:
        return torch.export.export(module, inputs, dynamic_shapes=shapes, strict=False), shapes
    except torch._dynamo.exc.UserError as error:
        refined = symbolic_fixes(error, shapes)
        if refined is None:
            raise
    return torch.export.export(module, inputs, dynamic_shapes=refined, strict=False), refined


def symbolic_fixes(error: Exception, shapes: tuple | None) -> tuple | None:
    """torch.export's suggested fixes, if they leave every marked dim symbolic; else None."""
    from torch.export.dynamic_shapes import refine_dynamic_shapes_from_suggested_fixes

    if shapes is None:
        return None
    try:
        refined = refine_dynamic_shapes_from_suggested_fixes(
            getattr(error, "msg", str(error)), shapes
        )
    except Exception:
        return None
    if not isinstance(refined, (tuple, list)):  # given a tuple, it returns one
        return None
    static = [d for axes in refined if axes for d in axes.values() if isinstance(d, int)]
    return None if static else tuple(refined)


def refinement_notes(requested: tuple | None, used: tuple | None) -> list[str]:
    """``the dynamo graph assumes height = 2*_height`` for each dim the capture refined."""
    pairs = zip(requested or (), used or ())
    return [
        f"the dynamo graph assumes {dim.__name__} = {axes_used[i].__name__} (the model's guards)"
        for axes, axes_used in pairs
        if axes
        for i, dim in axes.items()
        if axes_used[i].__name__ != dim.__name__
    ]


def rename_input_dims(model: onnx.ModelProto, dynamic_axes: DynamicAxes) -> None:
    """Name the graph's symbolic input dims after ``dynamic_axes`` (a refined dim arrives as
    ``2*_height``), everywhere the same name appears."""
    renames = {}
    for value in model.graph.input:
        for index, symbol in dynamic_axes.get(value.name, {}).items():
            dim = value.type.tensor_type.shape.dim[index]
            if dim.HasField("dim_param") and dim.dim_param != symbol:
                renames[dim.dim_param] = symbol
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


EXPORT_FUNCTIONS: dict[str, Callable[..., tuple[onnx.ModelProto, list[str]]]] = {
    "torchscript": export_torchscript,
    "dynamo": export_dynamo,
}


def dynamic_shapes(input_names: Sequence[str], dynamic_axes: DynamicAxes) -> tuple | None:
    """``torch.export`` dynamic shapes, one ``Dim`` per symbol: inputs sharing a symbol share it."""
    if not dynamic_axes:
        return None
    dims = {
        symbol: torch.export.Dim(symbol)
        for axes in dynamic_axes.values()
        for symbol in axes.values()
    }
    return tuple(
        {d: dims[s] for d, s in dynamic_axes.get(name, {}).items()} or None for name in input_names
    )


def two_or_more(
    inputs: tuple[torch.Tensor, ...], input_names: Sequence[str], dynamic_axes: DynamicAxes
) -> tuple:
    """torch.export specialises dims of size 1 (and size-1 examples make ops like matmul guard on
    ``dim == 1``), so a dynamic dim of size 1 is doubled for the capture; the graph is symbolic
    along it either way (check it at size 1 with ONNX Runtime)."""
    grown = []
    for tensor, name in zip(inputs, input_names):
        for dim in dynamic_axes.get(name, {}):
            tensor = torch.cat((tensor, tensor), dim) if tensor.shape[dim] == 1 else tensor
        grown.append(tensor)
    return tuple(grown)


# --- raw ONNX -> checked graph ---------------------------------------------------------------


def finish_graph(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """Inline functions, simplify, and check: default-domain ops only, onnx.checker passes."""
    model = inline_functions(model)
    strip_metadata(model)
    model = simplify_graph(model, label)
    foreign = sorted(
        {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    )
    if foreign or model.functions:
        raise VerificationError(
            f"the {label} exporter's graph has non-default-domain ops or functions: {foreign}"
        )
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise VerificationError(
            f"the {label} exporter's graph fails onnx.checker: {first_line(error)}"
        ) from None
    return model


def inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline local functions (the dynamo exporter may emit some) and drop unused domain imports."""
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
        del model.functions[:]
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def strip_metadata(model: onnx.ModelProto) -> None:
    """Drop the dynamo exporter's per-value metadata (FX nodes, stack traces with absolute paths):
    artifacts stay the same across machines and carry no local paths."""
    graph = model.graph
    for item in [
        graph,
        *graph.node,
        *graph.input,
        *graph.output,
        *graph.value_info,
        *graph.initializer,
    ]:
        del item.metadata_props[:]


def simplify_graph(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(
            model, skipped_optimizers=SKIPPED_ONNXSIM_PASSES, certify=False
        )
    except Exception as error:
        raise VerificationError(
            f"onnxsim cannot simplify the {label} exporter's graph: {first_line(error)}"
        ) from None
    if not ok:
        raise VerificationError(f"onnxsim could not validate the simplified {label} graph")
    return simplified


def check_dynamic_dims(model: onnx.ModelProto, dynamic_axes: DynamicAxes, label: str) -> None:
    """Graph inputs are symbolic exactly along ``dynamic_axes``, named by its symbols; static
    elsewhere."""
    for value in model.graph.input:
        axes = dynamic_axes.get(value.name, {})
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            actual = dim.dim_param if dim.HasField("dim_param") else dim.dim_value
            expected = axes.get(index)
            if (expected is not None and actual != expected) or (
                expected is None and not isinstance(actual, int)
            ):
                wanted = f"symbolic {expected!r}" if expected is not None else "static"
                raise VerificationError(
                    f"the {label} exporter's graph input {value.name!r} dim {index}"
                    f" is {actual!r}, not {wanted}"
                )


def count_nodes(model: onnx.ModelProto) -> int:
    return len(model.graph.node) + sum(len(f.node) for f in model.functions)


# --- silence: nothing an exporter prints reaches the terminal ---------------------------------


@contextlib.contextmanager
def captured_output() -> Iterator[None]:
    """Point file descriptors 1 and 2 at a temporary file: C++ prints bypass ``sys.stdout``."""
    flush_all()
    saved = (os.dup(1), os.dup(2))
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                flush_all()  # what C stdio still buffers belongs in the sink, not the terminal
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if LIBC is not None:
        LIBC.fflush(None)  # C stdio buffers (C++ prints) of all streams


LIBC = ctypes.CDLL(None) if os.name == "posix" else None


# --- user-facing lines: warnings and failures -------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    roots = [sysconfig.get_paths()["stdlib"]]
    for package in ("torch", "onnx", "onnxscript", "onnx_ir", "onnxsim", "sympy", "functorch"):
        spec = importlib.util.find_spec(package)
        roots += list(spec.submodule_search_locations or []) if spec else []
    return tuple(str(Path(root).resolve()) + os.sep for root in roots)


LIBRARY_ROOTS = _library_roots()
THIS_FILE = str(Path(__file__).resolve())


def is_user_file(filename: str) -> bool:
    """The module's own code: not torch, ONNX tooling, the standard library or this file."""
    if not filename or filename.startswith("<"):
        return False
    path = str(Path(filename).resolve())
    return path != THIS_FILE and not path.startswith(LIBRARY_ROOTS)


# A quoted source line is cut to this width, so that a message stays one readable line.
QUOTED_CODE_WIDTH = 80


def where(filename: str, lineno: int) -> str:
    """``halo.py:45: x.unfold(2, 8, 4)``"""
    code = linecache.getline(filename, lineno).strip()
    if len(code) > QUOTED_CODE_WIDTH:
        code = code[: QUOTED_CODE_WIDTH - 3] + "..."
    return f"{Path(filename).name}:{lineno}" + (f": {code}" if code else "")


def user_warnings(records: Sequence[warnings.WarningMessage]) -> list[str]:
    """Tracer warnings and warnings raised in the user's code, one line each, deduplicated."""
    lines: list[str] = []
    for record in records:
        in_user_code = is_user_file(record.filename)
        if not (in_user_code or issubclass(record.category, torch.jit.TracerWarning)):
            continue
        location = f" ({where(record.filename, record.lineno)})" if in_user_code else ""
        line = f"{record.category.__name__}: {first_sentence(str(record.message))}{location}"
        if line not in lines:
            lines.append(line)
    return lines


ANSI = re.compile(r"\x1b\[[0-9;]*m")
BOILERPLATE = re.compile(r"^Unsupported: ONNX export of operator \w+, ")
SENTENCE_END = re.compile(r"\.(\s|$)|\s\(unhinted|\s{2}| Please ")


def first_sentence(text: str, limit: int = 200) -> str:
    line = BOILERPLATE.sub("", ANSI.sub("", text).strip().split("\n")[0])
    end = SENTENCE_END.search(line)
    return (line[: end.start()] if end else line).strip()[:limit]


def failure_line(label: str, error: BaseException) -> str:
    """One line: the exporter, the operator, the user's source line where known, the reason."""
    chain = exception_chain(error)
    constraint = constraint_violation(chain)
    if constraint:
        return f"the {label} exporter cannot keep {constraint}"
    node = jit_node(chain)
    operator = node.kind() if node is not None else operator_in(chain)
    location = source_from_jit_node(node) if node is not None else None
    location = location or source_from_frames(chain) or source_from_text(chain)
    reason = next(
        (first_sentence(str(e)) for e in reversed(chain) if first_sentence(str(e))),
        type(error).__name__,
    )
    what = f"cannot export {operator}" if operator else "failed"
    return f"the {label} exporter {what}" + (f" ({location})" if location else "") + f": {reason}"


# How many causes to follow: a guard against cause chains that loop.
MAX_CAUSES = 16


def exception_chain(error: BaseException) -> list[BaseException]:
    """The error and its explicit causes (``raise ... from``), outermost first."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < MAX_CAUSES:
        chain.append(chain[-1].__cause__)
    return chain


def traceback_frames(error: BaseException) -> Iterator:
    tb = error.__traceback__
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def jit_node(chain: Sequence[BaseException]) -> torch._C.Node | None:
    """The TorchScript node whose ONNX conversion failed: a local of the failing frames."""
    for error in chain:
        for frame, _ in reversed(list(traceback_frames(error))):
            node = next(
                (v for v in list(frame.f_locals.values()) if isinstance(v, torch._C.Node)), None
            )
            if node is not None:
                return node
    return None


def source_from_jit_node(node: torch._C.Node) -> str | None:
    """The innermost user frame of the node's recorded call stack (``path(line): fn`` lines)."""
    # a str at run time, whatever torch's stubs say
    stack = str(node.sourceRange())
    for match in re.finditer(r"^(.+?)\((\d+)\): \w+$", stack, re.MULTILINE):
        if is_user_file(match.group(1)):
            return where(match.group(1), int(match.group(2)))
    return None


def source_from_frames(chain: Sequence[BaseException]) -> str | None:
    """The innermost user frame on the stack when an error was raised (tracing, non-strict
    export)."""
    for error in reversed(chain):
        user = [
            (f.f_code.co_filename, line)
            for f, line in traceback_frames(error)
            if is_user_file(f.f_code.co_filename)
        ]
        if user:
            return where(*user[-1])
    return None


def source_from_text(chain: Sequence[BaseException]) -> str | None:
    """A user frame quoted in a message (``File "x.py", line 4``), innermost last."""
    for error in reversed(chain):
        quoted = [
            (f, int(n))
            for f, n in re.findall(r'File "([^"]+)", line (\d+)', str(error))
            if is_user_file(f)
        ]
        if quoted:
            return where(*quoted[-1])
    return None


def operator_in(chain: Sequence[BaseException]) -> str | None:
    """An ATen operator named in a message's first line (``aten::unfold``,
    ``aten.unfold.default``)."""
    for error in reversed(chain):
        match = re.search(
            r"\b(aten|prim)(?:::|\.)([a-zA-Z_]\w*)", str(error).strip().split("\n")[0]
        )
        if match:
            return f"{match.group(1)}::{match.group(2)}"
    return None


def constraint_violation(chain: Sequence[BaseException]) -> str | None:
    """``'batch' dynamic: the model specialises it to 2`` for torch.export's constraint errors,
    or ``...: the model needs (height % 2) == 0`` for a guard on a marked dim."""
    for error in chain:
        text = str(error)
        names = re.search(r"Constraints violated \(([^)]*)\)", text)
        if not names:
            continue
        constant = re.search(r"specialized it to be a constant \(([^)]*)\)", text)
        guard = re.search(
            r"Not all values of (\w+) = (\S+) .*? generated guard (.+?)\.?$", text, re.M
        )
        if constant:
            why = f"the model specialises it to {constant.group(1)}"
        elif guard:
            why = "the model needs " + guard.group(3).replace(guard.group(2), guard.group(1))
        else:
            why = first_sentence(text.split("\n", 1)[-1])
        return f"{names.group(1)!r} dynamic: {why}"
    return None
