"""``attn-export all``: export and verify the whole zoo; write report.json, .md and .png.

One row per module and backend/precision. Cells that need hardware this host lacks say so
("not run: no GPU") instead of disappearing, so a CPU report and a GPU report line up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import modules
from .atomic import atomic_write
from .errors import EXIT_OK, EXIT_USAGE, EXIT_VERIFICATION_FAILED, AttnExportError
from .pipeline import ExportOptions, run_export
from .timing import time_side_by_side
from .ui import save_figure, with_progress

BACKENDS = ("torch", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt-fp32", "tensorrt-fp16")
# The report's latency is a side note to the verification of the whole zoo: two rounds keep
# `all` quick (`attn-export bench` times with more).
LATENCY_ROUNDS = 2
ERROR_CHARS = 120  # of a failure's message in its report.md cell; report.json keeps it whole
MARKDOWN_COLUMNS = (
    "module",
    "backend",
    "dynamic",
    "status",
    "draws",
    "max abs err",
    "worst nrmse",
    "latency ms",
    "vs torch",
    "nodes (exported -> simplified)",
    "note",
)
# report.png: one row of cells per module, in inches
FIGURE_WIDTH = 8
ROW_HEIGHT = 0.25
FIGURE_MARGIN = 1.5  # title and backend labels
DPI = 100


def _gpu_note(trt: bool) -> dict[str, str]:
    """Why each GPU cell is empty on this host, or {} where it will be filled."""
    import onnxruntime
    import torch

    from .backends.tensorrt import tensorrt_unavailable_reason

    notes: dict[str, str] = {}
    has_gpu = torch.cuda.is_available()
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        notes["onnxruntime-cuda"] = (
            "not run: no GPU" if not has_gpu else "not run: onnxruntime-gpu not installed"
        )
    reason = tensorrt_unavailable_reason()
    for precision in ("tensorrt-fp32", "tensorrt-fp16"):
        if reason is not None:
            notes[precision] = "not run: no GPU" if not has_gpu else f"not run: {reason}"
        elif not trt:
            notes[precision] = "not run: --trt not given"
    return notes


def _rows_for(
    name: str, manifest: dict[str, Any], runners: dict[str, Any], gpu_notes: dict[str, str]
) -> list[dict[str, Any]]:
    functions = {
        "torch": lambda: runners["torch"].run(runners["feeds"]),
        "onnxruntime-cpu": lambda: runners["onnxruntime"].run(runners["feeds"]),
    }
    latency = time_side_by_side(functions, rounds=LATENCY_ROUNDS)
    nodes = f"{manifest['onnx']['nodes_exported']} -> {manifest['onnx']['nodes_simplified']}"
    dynamic = _dynamic_axes(manifest)
    rows = [
        {
            "module": name,
            "backend": "torch",
            "status": "reference",
            "latency_ms": latency["torch"].median_ms,
            "dynamic": dynamic or "static",
        }
    ]
    for backend in BACKENDS[1:]:
        row: dict[str, Any] = {"module": name, "backend": backend, "dynamic": dynamic or "static"}
        checks = [c for c in manifest["checks"] if c["backend"] == backend]
        if checks:
            row.update(
                status="passed" if all(c["passed"] for c in checks) else "FAILED",
                max_abs_err=_worst(c["max_abs_err"] for c in checks),
                worst_nrmse=_worst(c["worst_nrmse"] for c in checks),
                draws=len(checks),
                nodes=nodes,
            )
            if backend == "onnxruntime-cpu":
                row["latency_ms"] = latency["onnxruntime-cpu"].median_ms
                row["speedup_vs_torch"] = (
                    latency["torch"].median_ms / latency["onnxruntime-cpu"].median_ms
                )
        else:
            row["status"] = gpu_notes.get(backend, "not run")
        if backend == "tensorrt-fp16" and manifest.get("fp16"):
            row["note"] = _fp16_note(manifest["fp16"])
        rows.append(row)
    return rows


def _dynamic_axes(manifest: dict[str, Any]) -> str:
    """The inputs' dynamic axis names, sorted and joined ("" for a static graph)."""
    axes = {
        axis
        for i in manifest["inputs"]
        for axis in i.get("dynamic", {}).get("dynamic_axes", {}).values()
    }
    return ", ".join(sorted(axes))


def _worst(values: Iterable[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return max(finite) if finite else None


def _fp16_note(fp16: dict[str, Any]) -> str:
    """What the CPU learned of the fp16 graph TensorRT would build (--fp16)."""
    verdict = "passed" if fp16.get("passed") else f"FAILED ({fp16.get('reason', '')})"
    kept = len(fp16.get("fp32_nodes", []))
    return (
        f"fp16 graph checked on CPU (float16 storage simulated): {verdict},"
        f" {kept} node(s) kept in fp32"
    )


def run_all(
    out_dir: Path,
    trt: bool = False,
    fp16: bool = False,
    pattern: str = "*",
    report: Callable[[str], None] = print,
    progress: bool = True,
    dynamic: Sequence[str] = (),
) -> int:
    """Every module matching ``pattern``; with ``dynamic``, each with the requested axes its
    math allows."""
    names = modules.list_modules(pattern)
    gpu_notes = _gpu_note(trt)
    rows: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    worst = EXIT_OK
    started = time.perf_counter()
    for name in with_progress(names, "export", progress):
        try:
            axes = [a for a in dynamic if a in modules.get_spec(name).dynamic]
            options = ExportOptions(out_dir=out_dir, trt=trt, fp16=fp16, dynamic=axes)
            result = run_export(name, options, report=lambda line: None)
            rows.extend(_rows_for(name, result.manifest, result.runners, gpu_notes))
            report(f"PASSED {name}")
        except AttnExportError as error:
            failures[name] = str(error)
            worst = max(worst, error.exit_code)
            rows.append(
                {
                    "module": name,
                    "backend": "onnxruntime-cpu",
                    "status": "FAILED",
                    "error": str(error),
                }
            )
            report(f"FAILED {name}: {error}")
    seconds = time.perf_counter() - started
    summary = {
        "modules": len(names),
        "passed": len(names) - len(failures),
        "failed": sorted(failures),
        "seconds": round(seconds, 1),
        "trt": trt,
        "fp16": fp16,
    }
    written = _write_reports(out_dir, rows, summary)
    report(
        f"{summary['passed']} passed, {len(failures)} failed in {seconds:.0f} s;"
        f" wrote {', '.join(str(p) for p in written)}"
    )
    if not failures:
        return EXIT_OK
    return EXIT_VERIFICATION_FAILED if worst == EXIT_USAGE else worst


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _write_reports(
    out_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any]
) -> list[Path]:
    """Writes report.json and report.md, and report.png where matplotlib is installed; returns
    what it wrote."""
    atomic_write(
        out_dir / "report.json", json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# attn-export zoo report",
        "",
        f"{summary['passed']}/{summary['modules']} modules passed in {summary['seconds']} s.",
        "",
        _markdown_row(MARKDOWN_COLUMNS),
        _markdown_row(["---"] * len(MARKDOWN_COLUMNS)),
    ]
    lines.extend(_markdown_row(_markdown_cells(r)) for r in rows)
    atomic_write(out_dir / "report.md", "\n".join(lines) + "\n")
    written = [out_dir / "report.json", out_dir / "report.md"]
    if _plot(out_dir / "report.png", rows):
        written.append(out_dir / "report.png")
    return written


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown_cells(row: dict[str, Any]) -> list[str]:
    error = f": {row['error'][:ERROR_CHARS]}" if row.get("error") else ""
    speedup = row.get("speedup_vs_torch")
    return [
        row["module"],
        row["backend"],
        row.get("dynamic", ""),
        f"{row['status']}{error}",
        str(row.get("draws", "")),
        _fmt(row.get("max_abs_err"), ".2e"),
        _fmt(row.get("worst_nrmse"), ".2e"),
        _fmt(row.get("latency_ms"), ".3f"),
        f"{_fmt(speedup, '.2f')}{'x' if speedup else ''}",
        row.get("nodes", ""),
        row.get("note", ""),
    ]


def _plot(path: Path, rows: list[dict[str, Any]]) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False  # report.png needs the `bench` extra; json and md are always written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = sorted({r["module"] for r in rows})
    status_colour = {"passed": 2, "reference": 3, "FAILED": 0}
    grid = np.array(
        [
            [
                status_colour.get(
                    next((r["status"] for r in rows if r["module"] == n and r["backend"] == b), ""),
                    1,
                )
                for b in BACKENDS
            ]
            for n in names
        ]
    )
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, ROW_HEIGHT * len(names) + FIGURE_MARGIN))
    colours = matplotlib.colors.ListedColormap(["tab:red", "lightgrey", "tab:green", "tab:blue"])
    ax.imshow(grid, cmap=colours, vmin=0, vmax=3, aspect="auto")
    ax.set_xticks(range(len(BACKENDS)), BACKENDS, rotation=20)
    ax.set_yticks(range(len(names)), names)
    ax.set_title("green passed, red failed, grey not run (no GPU / not requested), blue reference")
    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)
    return True
