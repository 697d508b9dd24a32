"""The export job: module -> ONNX -> onnxsim -> checks -> ONNX Runtime (and TensorRT) -> artifacts.

Everything is computed in memory and verified before the first byte is written; artifacts
are then written under temporary names and renamed, so a failed or interrupted run leaves
the previous artifacts as they were.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx
import torch

from . import __version__
from .atomic import TempFiles, folder_lock
from .backends import OnnxRuntimeBackend, TorchBackend
from .compare import BackendCheck, compare, raise_on_failures
from .errors import EnvironmentMissingError, UsageError, VerificationError, first_line
from .export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, export_to_onnx, input_names_for
from .layout import ChannelsLastAdapter, check_nhwc_shapes
from .target import Shape, build_module, resolve_shapes, resolve_target
from .weights import file_sha256, load_weights

DEFAULT_ATOL = 1e-4  # fp32 ORT vs PyTorch: same math, different summation order and kernels
DEFAULT_RTOL = 1e-4
DEFAULT_OUT_DIR = Path("attn_export_out")

Reporter = Callable[[str], None]


@dataclass
class ExportOptions:
    shapes: Sequence[Shape] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    weights: Optional[Path] = None
    out_dir: Path = DEFAULT_OUT_DIR
    opset: int = DEFAULT_OPSET
    atol: Optional[float] = None
    rtol: Optional[float] = None
    trt: bool = False
    fp16: bool = False
    seed: int = 0
    threads: Optional[int] = None
    nhwc: bool = False


@dataclass
class ExportResult:
    name: str
    onnx_path: Path
    manifest_path: Path
    manifest: Dict[str, Any]
    # The live objects behind the manifest, for callers that go on to time or re-run them.
    runners: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.manifest["passed"])


def validate_options(options: ExportOptions) -> None:
    if not MIN_OPSET <= options.opset <= MAX_OPSET:
        raise UsageError(f"--opset {options.opset} is outside the supported range {MIN_OPSET}-{MAX_OPSET}")
    for label, value in (("--atol", options.atol), ("--rtol", options.rtol)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise UsageError(f"{label} must be a finite number >= 0, got {value}")
    check_out_dir(Path(options.out_dir))


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")


def prepare_out_dir(out: Path) -> None:
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create --out folder {str(out)!r}: {error.strerror or error}") from None
    probe = out / ".attn-export-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write into --out folder {str(out)!r}: {error.strerror or error}") from None


def check_output_file(path: Path, flag: str, suffix: Optional[str] = None) -> None:
    """Before a long run: a file option must name a file that can be written."""
    if suffix and path.suffix.lower() != suffix:
        raise UsageError(f"{flag} writes {suffix[1:].upper()}; give a file name ending in {suffix} (got {str(path)!r})")
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a folder, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {str(path)!r}: folder {str(parent)!r} is not writable")


# The run holds each input several times over (torch, ONNX Runtime, the comparison) and the
# module's activations are larger still: refuse inputs that alone take a quarter of the RAM.
INPUT_MEMORY_FRACTION = 0.25


def check_input_memory(shapes: Sequence[Shape]) -> None:
    needed = sum(4 * int(np.prod(shape, dtype=np.float64)) for shape in shapes)  # float32
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): let allocation decide
        return
    if needed > INPUT_MEMORY_FRACTION * physical:
        shapes_text = " ".join(",".join(map(str, shape)) for shape in shapes)
        raise UsageError(
            f"inputs {shapes_text} take {needed / 2**30:.1f} GiB as float32, more than a quarter of this "
            f"machine's {physical / 2**30:.0f} GiB of memory; give a smaller --shape"
        )


def random_inputs(shapes: Sequence[Shape], seed: int) -> List[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.standard_normal(shape, dtype=np.float32) for shape in shapes]


def package_versions() -> Dict[str, Optional[str]]:
    versions: Dict[str, Optional[str]] = {"attn_export": __version__, "python": platform.python_version()}
    for package in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "numpy", "tensorrt", "onnxconverter-common"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


class Timer:
    """Prints one line per step with its duration."""

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.seconds: Dict[str, float] = {}

    def step(self, label: str, started: float, detail: str = "") -> None:
        elapsed = time.perf_counter() - started
        self.seconds[label] = round(elapsed, 4)
        self.report(f"  {label:<12} {elapsed:6.2f} s  {detail}".rstrip())


def run_export(name: str, options: ExportOptions, report: Reporter = print) -> ExportResult:
    """Export, verify and write the artifacts of one module. Raises on any failure."""
    validate_options(options)
    target = resolve_target(name)
    module, kwargs = build_module(target, dict(options.kwargs), options.seed)
    if options.weights is not None:
        load_weights(module, Path(options.weights))
    shapes = resolve_shapes(target, options.shapes, module, nhwc=options.nhwc)
    if options.nhwc:
        shapes = check_nhwc_shapes(target.name, shapes)
        module = ChannelsLastAdapter(module).eval()
    check_input_memory(shapes)
    out_dir = Path(options.out_dir)
    prepare_out_dir(out_dir)
    atol = options.atol if options.atol is not None else (target.atol if target.atol is not None else DEFAULT_ATOL)
    rtol = options.rtol if options.rtol is not None else (target.rtol if target.rtol is not None else DEFAULT_RTOL)
    timer = Timer(report)

    arrays = random_inputs(shapes, options.seed)
    input_names = input_names_for(len(shapes))
    feeds = dict(zip(input_names, arrays))
    torch_backend = TorchBackend(module, input_names)
    started = time.perf_counter()
    try:
        references = torch_backend.run(feeds)
    except MemoryError:  # the machine's limit, not the user's input: the CLI says so
        raise
    except Exception as error:  # a shape the module cannot take: the user's input
        shape_text = " ".join(",".join(map(str, s)) for s in shapes)
        raise UsageError(f"{target.name} cannot take input shape {shape_text}: {first_line(error)}") from None
    timer.step("torch", started, f"{len(references)} output(s) {', '.join(str(tuple(r.shape)) for r in references)}")
    output_names = ["output"] if len(references) == 1 else [f"output_{i}" for i in range(len(references))]

    started = time.perf_counter()
    try:
        graph = export_to_onnx(module, tuple(torch.from_numpy(a) for a in arrays), input_names, output_names, options.opset)
    except (UsageError, VerificationError, MemoryError):
        raise
    except Exception as error:
        raise VerificationError(f"export of {target.name} failed: {first_line(error)}") from None
    timer.step("export", started, f"opset {graph.opset}, {graph.nodes_exported} -> {graph.nodes_simplified} nodes (onnxsim)")
    onnx_bytes = graph.model.SerializeToString(deterministic=True)

    started = time.perf_counter()
    trt_verdict = _static_trt_check(graph.model, f"{target.name}.onnx", options.trt, report)
    timer.step("trt-check", started, _verdict_text(trt_verdict))

    started = time.perf_counter()
    ort_backend = OnnxRuntimeBackend(onnx_bytes, threads=options.threads)
    checks: List[BackendCheck] = [compare(ort_backend.name, references, ort_backend.run(feeds), atol, rtol, output_names)]
    timer.step("onnxruntime", started, _check_text(checks[-1]))

    fp16_section = None
    fp16_bytes = None
    if options.fp16:
        started = time.perf_counter()
        fp16_section, fp16_bytes = _fp16_graph(graph.model, feeds, target.name, options.trt, report)
        timer.step("fp16", started, "passed" if fp16_section["passed"] else "FAILED")

    onnx_path = out_dir / f"{target.name}.onnx"
    manifest_path = out_dir / f"{target.name}.json"
    manifest: Dict[str, Any] = {
        "module": target.name,
        "source": target.source,
        "class": type(module.module if options.nhwc else module).__name__,
        "layout": "NHWC" if options.nhwc else "as the module (NCHW for 4-D)",
        "paper": target.paper,
        "kwargs": _jsonable(kwargs),
        "seed": options.seed,
        "weights": {"file": str(options.weights), "sha256": file_sha256(Path(options.weights))} if options.weights else None,
        "inputs": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in feeds.items()],
        # forward arguments the module never reads are not graph inputs (e.g. EMSA's keys with ratio > 1)
        "unused_inputs": [n for n in feeds if n not in {i.name for i in graph.model.graph.input}],
        "outputs": [{"name": n, "shape": list(r.shape), "dtype": "float32"} for n, r in zip(output_names, references)],
        "onnx": {
            "file": onnx_path.name,
            "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "opset": graph.opset,
            "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
            "simplifier": {"tool": "onnxsim", "skipped_passes": ["fuse_qkv"]},
            "nodes_exported": graph.nodes_exported,
            "nodes_simplified": graph.nodes_simplified,
            "op_types": sorted({n.op_type for n in graph.model.graph.node}),
        },
        "trt_parser_check": trt_verdict,
        "fp16": fp16_section,
        "versions": package_versions(),
        "command": _command_line(),
        "timings_s": timer.seconds,
        "checks": [c.to_dict() for c in checks],
    }
    manifest["passed"] = all(c.passed for c in checks) and (fp16_section is None or fp16_section["passed"])
    if not manifest["passed"]:
        raise_on_failures(checks)
        raise VerificationError(f"{target.name}: the fp16 graph fails its storage check: {fp16_section.get('reason', '')}")

    with TempFiles() as temps:
        onnx_temp = temps.write_bytes(onnx_path, onnx_bytes)
        fp16_temp = temps.write_bytes(out_dir / f"{target.name}.fp16.onnx", fp16_bytes) if fp16_bytes else None
        manifest_temp = temps.write_bytes(manifest_path, _manifest_bytes(manifest))
        with folder_lock(out_dir):
            temps.commit(onnx_temp, onnx_path)
            if fp16_temp:
                temps.commit(fp16_temp, out_dir / f"{target.name}.fp16.onnx")
            temps.commit(manifest_temp, manifest_path)

    result = ExportResult(target.name, onnx_path, manifest_path, manifest,
                          runners={"torch": torch_backend, "onnxruntime": ort_backend, "feeds": feeds, "references": references})
    if options.trt:
        _tensorrt_stage(result, feeds, references, output_names, options, timer, fp16_bytes)
    return result


def _tensorrt_stage(result, feeds, references, output_names, options, timer, fp16_bytes) -> None:
    """Build and verify TensorRT engines; the manifest is rewritten with the new checks."""
    from .backends import tensorrt as trt_backend

    reason = trt_backend.tensorrt_unavailable_reason()
    manifest = result.manifest
    if reason is not None:
        manifest["tensorrt"] = {"status": "not run", "reason": reason}
        _rewrite_manifest(result)
        raise EnvironmentMissingError(f"no TensorRT engine built: {reason}; the verified ONNX is in {result.onnx_path}")
    out_dir = result.onnx_path.parent
    cache_dir = out_dir / ".engine-cache"
    builds = [("fp32", result.onnx_path, out_dir / f"{result.name}.engine")]
    if fp16_bytes:
        builds.append(("fp16", out_dir / f"{result.name}.fp16.onnx", out_dir / f"{result.name}.fp16.engine"))
    engines = []
    for precision, onnx_path, engine_path in builds:
        started = time.perf_counter()
        with TempFiles() as temps:
            engine_temp = temps.temp_for(engine_path)
            info = trt_backend.build_engine(
                onnx_path, engine_temp, precision=precision, timing_cache=out_dir / "trt.timing.cache", cache_dir=cache_dir
            )
            backend = trt_backend.TensorRTBackend(engine_temp, precision=precision)
            try:
                outputs = backend.run(feeds)
            finally:
                backend.close()  # free GPU memory before the next build
            atol, rtol, min_cosine = trt_backend.TOLERANCES[precision]
            check = compare(backend.name, references, outputs, atol, rtol, output_names, min_cosine=min_cosine)
            manifest["checks"].append(check.to_dict())
            engine_record = {k: v for k, v in info.to_dict().items() if k != "engine_path"}  # a temporary name
            engines.append({**engine_record, "file": engine_path.name, "passed": check.passed})
            if check.passed:
                temps.commit(engine_temp, engine_path)
        timer.step(f"trt-{precision}", started, _check_text(check) + (" (engine cache hit)" if info.cache_hit else ""))
    manifest["tensorrt"] = {"status": "run", "engines": engines}
    manifest["passed"] = all(c["passed"] for c in manifest["checks"])
    _rewrite_manifest(result)
    if not manifest["passed"]:
        failed = [c["backend"] for c in manifest["checks"] if not c["passed"]]
        raise VerificationError(f"{result.name}: {', '.join(failed)} output does not match PyTorch (see {result.manifest_path})")


def _static_trt_check(model: onnx.ModelProto, file_name: str, required: bool, report: Reporter) -> Dict[str, Any]:
    """TensorRT parser prediction for a graph about to be written: fatal under --trt, else a warning."""
    from .trt_check import check_model

    verdict = check_model(model).to_dict()
    errors = [f for f in verdict["findings"] if f["severity"] == "error"]
    if errors:
        first = errors[0]
        text = f"{first['op_type']} ({first['rule']}): {first['message']}"
        if required:
            raise VerificationError(f"TensorRT's parser would reject {file_name}: {text}")
        report(f"  warning: TensorRT's parser would reject {file_name}: {text}")
    return verdict


def _verdict_text(verdict: Dict[str, Any]) -> str:
    failing = sum(1 for f in verdict["findings"] if f["severity"] == "error")
    return "TensorRT parser: would parse" if not failing else f"TensorRT parser: {failing} node(s) would fail"


def _fp16_graph(model: onnx.ModelProto, feeds: Dict[str, np.ndarray], name: str, trt: bool, report: Reporter):
    from .fp16 import convert_to_fp16

    result = convert_to_fp16(model, feeds)
    section = result.to_dict()
    section["trt_parser_check"] = _static_trt_check(result.model, f"{name}.fp16.onnx", trt, report)
    return section, result.model.SerializeToString(deterministic=True)


def _rewrite_manifest(result: ExportResult) -> None:
    with TempFiles() as temps:
        temps.commit(temps.write_bytes(result.manifest_path, _manifest_bytes(result.manifest)), result.manifest_path)


def _manifest_bytes(manifest: Dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _check_text(check: BackendCheck) -> str:
    verdict = "ok" if check.passed else "MISMATCH"
    return f"{verdict}: max abs {check.max_abs_err:.3g}, max rel {check.max_rel_err:.3g} (atol {check.atol:g}, rtol {check.rtol:g})"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def _command_line() -> str:
    return " ".join(["attn-export", *sys.argv[1:]]) if sys.argv and "attn" in Path(sys.argv[0]).name else ""
