"""The export job as stages: build -> reference -> export (+ onnxsim) -> static checks ->
verify -> fp16 -> engine -> write.

Each stage is a function with a typed result; :func:`run_export` runs them in order and
the CLI and the Python API (:func:`attn_export.export`) are thin callers. Everything is
verified in memory (TensorRT engines are built from the graph's bytes) and written once at
the end under temporary names that are then renamed, so a failed or interrupted run leaves
earlier artifacts as they were and the manifest is never rewritten.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from . import tolerances
from .atomic import TempFiles, folder_lock
from .backends import Backend, OnnxRuntimeBackend, TorchBackend
from .compare import BackendCheck, compare, raise_on_failures
from .draws import (
    FP16_CHECK_SEED_OFFSETS,
    FP16_TUNING_SEED_OFFSETS,
    DrawSet,
    InputDraw,
    corner_seed,
    export_draw,
    fp16_corner_seed,
    fresh_draws,
    load_user_inputs,
    normal_draws,
)
from .dynamic import InputProfile, axis_maps, check_axes_allowed, profile_points, resolve_profiles
from .errors import EnvironmentMissingError, UsageError, VerificationError, first_line
from .layout import ChannelsLastAdapter, check_nhwc_shapes
from .manifest import artifact_name, build_manifest, manifest_bytes
from .onnx_export import ExportedGraph, export_to_onnx, input_names_for
from .options import (
    DEFAULT_OPSET,
    DEFAULT_OUT_DIR,
    ExportOptions,
    check_input_memory,
    prepare_out_dir,
    validate_options,
)
from .parsing import shape_text, shapes_text
from .structure import FlatOutputs, OutputLeaf, flatten_outputs, output_leaves
from .target import (
    Shape,
    Target,
    build_module,
    forward_parameter_names,
    module_target,
    resolve_shapes,
    resolve_target,
)
from .weights import load_weights, redraw_zero_parameters

Reporter = Callable[[str], None]

__all__ = ["DEFAULT_OPSET", "DEFAULT_OUT_DIR", "ExportOptions", "ExportResult", "run_export"]


class Timer:
    """Prints one line per step with its duration."""

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.seconds: dict[str, float] = {}

    def step(self, label: str, started: float, detail: str = "") -> None:
        elapsed = time.perf_counter() - started
        self.seconds[label] = round(elapsed, 4)
        self.report(f"  {label:<12} {elapsed:6.2f} s  {detail}".rstrip())


# ----------------------------------------------------------------------------- stage results


@dataclass
class BuiltModel:
    target: Target
    name: str
    module: nn.Module  # what is exported (wrapped for --nhwc)
    class_name: str
    kwargs: dict[str, Any]
    input_names: list[str]
    shapes: list[Shape]  # the export shapes (opt of a dynamic profile)
    profiles: list[InputProfile] = field(default_factory=list)
    user_draws: list[InputDraw] = field(default_factory=list)
    # zero-initialised parameters given random values
    redrawn: list[str] = field(default_factory=list)


@dataclass
class ReferenceRun:
    draws: DrawSet
    leaves: list[OutputLeaf]
    outputs: dict[str, list[np.ndarray]]  # draw label -> outputs in leaf order
    pristine: nn.Module  # a copy made before any forward ran: what the exporter traces

    @property
    def output_names(self) -> list[str]:
        return [leaf.name for leaf in self.leaves]


@dataclass
class Fp32Stage:
    graph: ExportedGraph
    onnx_bytes: bytes  # the graph as written (deterministic serialisation)
    trt_verdict: dict[str, Any]  # the TensorRT parser prediction (static_checks)
    tolerance: tolerances.Tolerance
    checks: list[BackendCheck]  # ONNX Runtime against PyTorch, one per verification draw
    backend: OnnxRuntimeBackend  # the session that ran them


@dataclass
class Fp16Stage:
    section: dict[str, Any]
    model_bytes: bytes

    @property
    def passed(self) -> bool:
        return bool(self.section["passed"])


@dataclass
class EngineStage:
    section: dict[str, Any]
    checks: list[BackendCheck]
    engines: dict[str, bytes]  # file name -> engine bytes that passed
    missing: str | None = None  # why no engine was built (TensorRT or CUDA absent)


@dataclass
class ExportResult:
    name: str
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    written: list[Path] = field(default_factory=list)  # every file this run wrote
    # The live objects behind the manifest, for callers that go on to time or re-run them.
    runners: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.manifest["passed"])


# ----------------------------------------------------------------------------- stages


def build(target: str | nn.Module, options: ExportOptions) -> BuiltModel:
    """Stage 1: the module with its weights, input names and (profile) shapes."""
    resolved = resolve_target(target) if isinstance(target, str) else module_target(target)
    module, kwargs = build_module(resolved, dict(options.kwargs), options.seed)
    redrawn: list[str] = []
    if options.weights is not None:
        load_weights(module, Path(options.weights))
    elif resolved.source != "python object":
        redrawn = redraw_zero_parameters(module, options.seed)
    class_name = type(module).__name__
    input_names_guess = (
        input_names_for(len(resolved.default_shapes)) if resolved.default_shapes else None
    )
    user_draws = _user_draws(options, module, input_names_guess)
    shapes = _shapes(resolved, options, module, user_draws)
    if options.nhwc:
        shapes = check_nhwc_shapes(resolved.name or class_name, shapes)
        module = ChannelsLastAdapter(module).eval()
    check_input_memory(shapes)
    input_names = input_names_for(len(shapes))
    name = artifact_name(options.name, resolved.name, class_name)
    built = BuiltModel(
        resolved,
        name,
        module,
        class_name,
        kwargs,
        input_names,
        list(shapes),
        user_draws=user_draws,
        redrawn=redrawn,
    )
    built.profiles = _profiles(built, options)
    if built.profiles:
        check_input_memory([p.max for p in built.profiles])
    _check_user_draw_shapes(built)
    return built


def _user_draws(
    options: ExportOptions, module: nn.Module, input_names: list[str] | None
) -> list[InputDraw]:
    if not options.inputs:
        return []
    parameters = forward_parameter_names(module)
    count = len(input_names) if input_names else max(1, len(parameters))
    names = input_names or input_names_for(count)
    return [
        load_user_inputs(Path(path), names, parameters[: len(names)]) for path in options.inputs
    ]


def _shapes(
    target: Target, options: ExportOptions, module: nn.Module, user_draws: list[InputDraw]
) -> list[Shape]:
    if not options.shapes and user_draws and target.default_shapes is None:
        return [tuple(a.shape) for a in user_draws[0].arrays]  # a user's model: from its inputs
    return resolve_shapes(target, options.shapes, module, nhwc=options.nhwc)


def _profiles(built: BuiltModel, options: ExportOptions) -> list[InputProfile]:
    if not options.dynamic:
        return []
    spec = built.target.spec
    if spec is not None:
        check_axes_allowed(built.name, options.dynamic, spec.dynamic, spec.fixed_because)
    layout = "NHWC" if options.nhwc else (spec.layout if spec else "NCHW")
    registry_axes = (
        None if (spec is None or options.nhwc or spec.input_axes is None) else spec.input_axes
    )
    maps = axis_maps(built.shapes, registry_axes, layout)
    smallest = spec.min_spatial_for(built.kwargs) if spec else 1
    given = {"min": options.min_shapes, "opt": options.opt_shapes, "max": options.max_shapes}
    return resolve_profiles(
        built.input_names, built.shapes, options.dynamic, maps, _multiple(built), given, smallest
    )


def _check_user_draw_shapes(built: BuiltModel) -> None:
    """User inputs must fit the graph: the export shapes, or inside the dynamic profile."""
    profiles = {p.name: p for p in built.profiles}
    for draw in built.user_draws:
        for name, shape, array in zip(built.input_names, built.shapes, draw.arrays):
            profile = profiles.get(name)
            if not _fits(array.shape, shape, profile):
                allowed = (
                    f"{shape_text(profile.min)} to {shape_text(profile.max)}"
                    if profile
                    else shape_text(shape)
                )
                hint = "" if profile else " (see --shape, or --dynamic for other sizes)"
                raise UsageError(
                    f"--inputs {draw.label}: {name} has shape {shape_text(array.shape)},"
                    f" the graph takes {allowed}{hint}"
                )


def _fits(shape: Sequence[int], export_shape: Shape, profile: InputProfile | None) -> bool:
    if profile is None:
        return tuple(shape) == tuple(export_shape)
    return len(shape) == len(export_shape) and all(
        lo <= d <= hi for d, lo, hi in zip(shape, profile.min, profile.max)
    )


def reference(built: BuiltModel, options: ExportOptions) -> ReferenceRun:
    """Stage 2: PyTorch on every draw, on a copy, so that the exporter traces an untouched
    model."""
    pristine = _copy_of(built.module)
    draws = DrawSet(export_draw(built.shapes, options.seed), _verify_draws(built, options))
    outputs: dict[str, list[np.ndarray]] = {}
    leaves: list[OutputLeaf] | None = None
    for draw in draws.all:
        result = _torch_forward(built.module, draw, built)
        if leaves is None:
            leaves = output_leaves(result)
        outputs[draw.label] = [t.detach().float().cpu().numpy() for _, t in flatten_outputs(result)]
    assert leaves is not None
    return ReferenceRun(draws, leaves, outputs, pristine)


def _copy_of(module: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(module)
    except Exception as error:  # something uncopyable: say so rather than trace a used model
        raise UsageError(
            f"cannot copy the model before its reference run ({first_line(error)})"
        ) from None


def _verify_draws(built: BuiltModel, options: ExportOptions) -> list[InputDraw]:
    draws = fresh_draws(built.shapes, options.seed, count=options.verify_draws)
    if built.profiles:
        points = profile_points(built.profiles, built.shapes, built.input_names, _multiple(built))
        for index, (label, shapes) in enumerate(points):
            if label != "opt":
                seed = corner_seed(options.seed, index)
                draws += fresh_draws(shapes, seed, count=1, point=label, first_kind=index)
    return draws + built.user_draws


def _multiple(built: BuiltModel) -> int:
    spec = built.target.spec
    return spec.multiple_for(built.kwargs) if spec else 1


def _torch_forward(module: nn.Module, draw: InputDraw, built: BuiltModel) -> Any:
    args = [torch.from_numpy(np.ascontiguousarray(a)) for a in draw.arrays]
    try:
        # not inference_mode: tensors a model caches must stay usable by the tracer
        with torch.no_grad():
            return module(*args)
    except MemoryError:
        raise
    except Exception as error:  # a shape the module cannot take: the user's input
        shapes = shapes_text([a.shape for a in draw.arrays])
        raise UsageError(
            f"{built.name} cannot take input shape {shapes} ({draw.label}): {first_line(error)}"
        ) from None


def export_graph(built: BuiltModel, ref: ReferenceRun, options: ExportOptions) -> ExportedGraph:
    """Stage 3: trace the untouched copy at the export draw, simplify with onnxsim, check."""
    example = tuple(torch.from_numpy(a) for a in ref.draws.export.arrays)
    dynamic_axes = {p.name: dict(p.axes) for p in built.profiles} or None
    graph = export_to_onnx(
        FlatOutputs(ref.pristine).eval(),
        example,
        built.input_names,
        ref.output_names,
        options.opset,
        exporter=options.exporter,
        dynamic_axes=dynamic_axes,
    )
    _record_export_shapes(graph, built)
    return graph


def _record_export_shapes(graph: ExportedGraph, built: BuiltModel) -> None:
    """Dynamic graphs carry their export sizes, so `check` can spot them baked into constants."""
    from .trt_check import record_export_shapes

    if built.profiles:
        record_export_shapes(
            graph.model, {n: list(s) for n, s in zip(built.input_names, built.shapes)}
        )


def static_checks(
    model: onnx.ModelProto, file_name: str, required: bool, report: Reporter
) -> dict[str, Any]:
    """Stage 4: TensorRT parser prediction and dynamic-shape hazards: fatal under --trt, else a
    warning.

    (Without --trt the verification at the profile's corners is the judge of a dynamic graph.)
    """
    from .trt_check import DYNAMIC_RULES, check_model

    verdict = check_model(model).to_dict()
    errors = [f for f in verdict["findings"] if f["severity"] == "error"]
    if errors:
        # a size baked into the graph says the most
        first = min(errors, key=lambda f: f["rule"] not in DYNAMIC_RULES)
        problem = (
            "runs only at its export sizes"
            if first["rule"] in DYNAMIC_RULES
            else "would be rejected by TensorRT's parser"
        )
        text = (
            f"{file_name} {problem}: {first['op_type']} {first.get('node') or ''}"
            f" ({first['rule']}): {first['message']}"
        )
        if required:
            raise VerificationError(text)
        report(f"  warning: {text}")
    return verdict


def verify(
    onnx_bytes: bytes,
    built: BuiltModel,
    ref: ReferenceRun,
    tolerance: tolerances.Tolerance,
    threads: int | None,
) -> tuple[list[BackendCheck], OnnxRuntimeBackend]:
    """Stage 5: ONNX Runtime against PyTorch on every verification draw (never the export
    draw)."""
    backend = OnnxRuntimeBackend(onnx_bytes, threads=threads)

    def run(draw: InputDraw) -> list[np.ndarray]:
        try:
            return backend.run(draw.feeds(built.input_names))
        except Exception as error:  # e.g. a baked size that breaks at another batch
            raise VerificationError(
                f"onnxruntime cannot run the graph on {draw.label}: {first_line(error)}"
            ) from None

    return _compare_on_verify_draws(backend.name, run, ref, tolerance), backend


def _compare_on_verify_draws(
    backend: str,
    run: Callable[[InputDraw], Sequence[np.ndarray]],
    ref: ReferenceRun,
    tolerance: tolerances.Tolerance,
) -> list[BackendCheck]:
    """One check per verification draw: ``run``'s outputs against PyTorch's, draw by draw."""
    return [
        compare(backend, ref.outputs[d.label], run(d), tolerance, ref.output_names, d.label)
        for d in ref.draws.verify
    ]


def fp32_stage(
    built: BuiltModel, ref: ReferenceRun, options: ExportOptions, timer: Timer
) -> Fp32Stage:
    """Stages 3 to 5, timed: export, static checks, verification. Raises unless the graph
    verifies: an unverified graph is never written."""
    started = time.perf_counter()
    graph = export_graph(built, ref, options)
    timer.step("export", started, _export_text(graph))
    for line in graph.warnings:
        timer.report(f"  warning: {line}")
    onnx_bytes = graph.model.SerializeToString(deterministic=True)

    started = time.perf_counter()
    trt_verdict = static_checks(graph.model, f"{built.name}.onnx", options.trt, timer.report)
    timer.step("trt-check", started, _verdict_text(trt_verdict))

    started = time.perf_counter()
    tolerance = _fp32_tolerance(built, options)
    checks, backend = verify(onnx_bytes, built, ref, tolerance, options.threads)
    timer.step("onnxruntime", started, _checks_text(checks))
    raise_on_failures(checks)
    return Fp32Stage(graph, onnx_bytes, trt_verdict, tolerance, checks, backend)


# The fp16 storage simulation holds every intermediate tensor of the graph: profile corners
# whose inputs are this much larger than the export inputs are verified in fp32 only.
FP16_CORNER_MAX_GROWTH = 4
# The user's inputs are real data: the fp16 check takes them at their own scale.
USER_INPUT_FP16_SCALES = (1.0,)


@dataclass
class Fp16Draws:
    tuning: list[InputDraw]
    checks: list[InputDraw]
    corners_skipped: list[str]  # profile points verified in fp32 only (too large to simulate)
    has_user_inputs: bool


def fp16_draws(built: BuiltModel, ref: ReferenceRun, options: ExportOptions) -> Fp16Draws:
    """Tuning and check draws from one distribution (standard normal; the scales vary the
    magnitude) with disjoint seeds; the checks also cover the corners of a dynamic profile.
    The user's inputs (real data) are in both."""
    user = [d for d in ref.draws.verify if d.role == "user"]
    tuning_seeds = [options.seed + o for o in FP16_TUNING_SEED_OFFSETS]
    check_seeds = [options.seed + o for o in FP16_CHECK_SEED_OFFSETS]
    tuning = [ref.draws.export, *normal_draws(built.shapes, tuning_seeds, "fp16 tuning"), *user]
    checks = [*normal_draws(built.shapes, check_seeds, "fp16 check"), *user]
    export_elements = sum(a.size for a in ref.draws.export.arrays)
    corners = [d for d in ref.draws.verify if d.role == "fresh" and d.point != "opt"]
    skipped = []
    for index, corner in enumerate(corners):
        if sum(a.size for a in corner.arrays) > FP16_CORNER_MAX_GROWTH * export_elements:
            skipped.append(corner.point)
            continue
        seed = fp16_corner_seed(options.seed, index)
        checks += normal_draws(
            [a.shape for a in corner.arrays], [seed], "fp16 check", point=corner.point
        )
    return Fp16Draws(tuning, checks, skipped, bool(user))


def fp16_stage(
    graph: ExportedGraph,
    built: BuiltModel,
    ref: ReferenceRun,
    options: ExportOptions,
    timer: Timer,
) -> Fp16Stage:
    """Stage 6, timed: the fp16 graph, tuned on some draws and judged on others."""
    from .fp16 import DEFAULT_SCALES, Draw, convert_to_fp16

    def as_fp16_draws(draws: Sequence[InputDraw]) -> list[Draw]:
        return [Draw(d.label, d.feeds(built.input_names)) for d in draws]

    started = time.perf_counter()
    draws = fp16_draws(built, ref, options)
    default_scales = USER_INPUT_FP16_SCALES if draws.has_user_inputs else DEFAULT_SCALES
    result = convert_to_fp16(
        graph.model,
        as_fp16_draws(draws.tuning),
        as_fp16_draws(draws.checks),
        scales=tuple(options.fp16_scales or default_scales),
    )
    section = result.to_dict()
    if draws.corners_skipped:
        section["corners_checked_in_fp32_only"] = {
            "points": draws.corners_skipped,
            "why": f"inputs over {FP16_CORNER_MAX_GROWTH}x the export inputs: the storage"
            " simulation keeps every intermediate tensor (mobilevit at its max corner took"
            " over 19 GB)",
        }
    section["trt_parser_check"] = static_checks(
        result.model, f"{built.name}.fp16.onnx", options.trt, timer.report
    )
    stage = Fp16Stage(section, result.model.SerializeToString(deterministic=True))
    reason = stage.section.get("reason", "")
    timer.step("fp16", started, "passed" if stage.passed else f"FAILED: {reason}")
    return stage


def engine_stage(
    onnx_bytes: bytes,
    fp16: Fp16Stage | None,
    built: BuiltModel,
    ref: ReferenceRun,
    options: ExportOptions,
    timer: Timer,
) -> EngineStage:
    """Stage 7: TensorRT engines built from the graphs' bytes, checked on every verification
    draw."""
    from .backends import tensorrt as trt_backend

    reason = trt_backend.tensorrt_unavailable_reason()
    if reason is not None:
        return EngineStage({"status": "not run", "reason": reason}, [], {}, missing=reason)
    builds = [("fp32", onnx_bytes, f"{built.name}.engine", tolerances.TENSORRT_FP32)]
    if fp16 is not None:
        builds.append(("fp16", fp16.model_bytes, f"{built.name}.fp16.engine", tolerances.FP16))
    stage = EngineStage({"status": "run", "engines": []}, [], {})
    for precision, graph_bytes, file_name, tolerance in builds:
        started = time.perf_counter()
        engine, info = trt_backend.build_engine(
            graph_bytes,
            precision=precision,
            profile={p.name: (p.min, p.opt, p.max) for p in built.profiles} or None,
            timing_cache=Path(options.out_dir) / "trt.timing.cache",
            cache_dir=Path(options.out_dir) / ".engine-cache",
        )
        backend = trt_backend.TensorRTBackend(engine, precision=precision)
        try:
            ours = _compare_on_verify_draws(
                backend.name, partial(_run_backend, backend, built), ref, tolerance
            )
        finally:
            backend.close()  # free GPU memory before the next build
        passed = all(c.passed for c in ours)
        stage.checks += ours
        stage.section["engines"].append({**info.to_dict(), "file": file_name, "passed": passed})
        if passed:
            stage.engines[file_name] = engine
        cache_note = " (engine cache hit)" if info.cache_hit else ""
        timer.step(f"trt-{precision}", started, _checks_text(ours) + cache_note)
    return stage


def _run_backend(backend: Backend, built: BuiltModel, draw: InputDraw) -> list[np.ndarray]:
    return backend.run(draw.feeds(built.input_names))


def write_artifacts(out_dir: Path, files: dict[str, bytes]) -> None:
    """Stage 8: every file under a temporary name first, then renamed together under a folder
    lock."""
    with TempFiles() as temps:
        staged = [
            (temps.write_bytes(out_dir / name, data), out_dir / name)
            for name, data in files.items()
        ]
        with folder_lock(out_dir):
            for temp, destination in staged:
                temps.commit(temp, destination)


# ----------------------------------------------------------------------------- the job


def run_export(
    target: str | nn.Module, options: ExportOptions, report: Reporter = print
) -> ExportResult:
    """Export, verify and write the artifacts of one model. Raises on any failure.

    A failed fp32 check writes nothing. A failed fp16 check or TensorRT engine still writes
    the verified fp32 graph and the manifest (saying what failed), then raises.
    """
    validate_options(options)
    timer = Timer(report)
    started = time.perf_counter()
    built = build(target, options)
    out_dir = Path(options.out_dir)
    prepare_out_dir(out_dir)
    ref = reference(built, options)
    timer.step("torch", started, _reference_text(ref))
    fp32 = fp32_stage(built, ref, options, timer)
    fp16 = fp16_stage(fp32.graph, built, ref, options, timer) if options.fp16 else None
    engines = (
        engine_stage(fp32.onnx_bytes, fp16, built, ref, options, timer) if options.trt else None
    )
    manifest = build_manifest(built, ref, fp32, options, fp16, engines, timer.seconds)
    files = _artifacts(built.name, fp32.onnx_bytes, fp16, engines, manifest)
    write_artifacts(out_dir, files)
    result = ExportResult(
        built.name,
        out_dir / f"{built.name}.onnx",
        out_dir / f"{built.name}.json",
        manifest,
        written=[out_dir / name for name in files],
        runners={
            "onnxruntime": fp32.backend,
            "torch": TorchBackend(built.module, built.input_names),
            "feeds": ref.draws.export.feeds(built.input_names),
            "built": built,
        },
    )
    _raise_if_failed(result, fp16, engines)
    return result


def _artifacts(
    name: str,
    onnx_bytes: bytes,
    fp16: Fp16Stage | None,
    engines: EngineStage | None,
    manifest: dict[str, Any],
) -> dict[str, bytes]:
    """File name -> bytes: the verified graphs and engines, then the manifest."""
    files = {f"{name}.onnx": onnx_bytes}
    if fp16 is not None and fp16.passed:
        files[f"{name}.fp16.onnx"] = fp16.model_bytes
    files.update(engines.engines if engines else {})
    files[f"{name}.json"] = manifest_bytes(manifest)
    return files


def _raise_if_failed(
    result: ExportResult, fp16: Fp16Stage | None, engines: EngineStage | None
) -> None:
    if fp16 is not None and not fp16.passed:
        raise VerificationError(
            f"{result.name}: the fp16 graph fails its check ({fp16.section.get('reason', '')});"
            f" wrote the verified fp32 graph and the manifest:"
            f" {', '.join(map(str, result.written))}"
        )
    if engines is not None and engines.missing:
        raise EnvironmentMissingError(
            f"no TensorRT engine built: {engines.missing};"
            f" the verified ONNX is in {result.onnx_path}"
        )
    if engines is not None:
        raise_on_failures(engines.checks)


def _fp32_tolerance(built: BuiltModel, options: ExportOptions) -> tolerances.Tolerance:
    atol = options.atol if options.atol is not None else built.target.atol
    rtol = options.rtol if options.rtol is not None else built.target.rtol
    return tolerances.fp32_tolerance(atol, rtol)


def _reference_text(ref: ReferenceRun) -> str:
    arrays = ref.outputs[ref.draws.export.label]
    outputs = ", ".join(f"{leaf.name} {tuple(a.shape)}" for leaf, a in zip(ref.leaves, arrays))
    return f"{len(ref.draws.all)} draws, {len(ref.leaves)} output(s): {outputs}"


def _export_text(graph: ExportedGraph) -> str:
    text = (
        f"{graph.exporter}, opset {graph.opset},"
        f" {graph.nodes_exported} -> {graph.nodes_simplified} nodes (onnxsim)"
    )
    return text + (f"; {graph.fallback}" if graph.fallback else "")


def _verdict_text(verdict: dict[str, Any]) -> str:
    failing = sum(1 for f in verdict["findings"] if f["severity"] == "error")
    return (
        "TensorRT parser: would parse"
        if not failing
        else f"TensorRT parser: {failing} node(s) would fail"
    )


def _checks_text(checks: Sequence[BackendCheck]) -> str:
    failed = [c for c in checks if not c.passed]
    verdict = "ok" if not failed else f"MISMATCH on {len(failed)}/{len(checks)} draws"
    worst_abs = max((c.max_abs_err for c in checks), default=float("nan"))
    worst_nrmse = max((c.worst_nrmse for c in checks), default=float("nan"))
    return (
        f"{verdict}: {len(checks)} unseen draws, max abs {worst_abs:.3g},"
        f" worst nrmse {worst_nrmse:.3g}"
    )
