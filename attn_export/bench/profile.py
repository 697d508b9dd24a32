"""ONNX Runtime's own profiler: where a module's kernel time goes, per op type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..backends.base import ort_session

# Op types whose kernels do the counted (matmul/conv) FLOPs.
GEMM_OPS = frozenset(
    {"MatMul", "FusedMatMul", "Gemm", "Conv", "FusedConv", "ConvTranspose", "FusedGemm"}
)
PROFILE_WARM_UP_RUNS = 5  # profiled too, but left out of the totals
PROFILE_RUNS = 50  # enough runs that a kernel's mean time per run settles
TOP_OPS = 6  # op types named in the one-line summary


def profile_kernels(
    model: bytes,
    feeds: dict[str, np.ndarray],
    threads: int,
    workdir: Path,
    runs: int = PROFILE_RUNS,
) -> dict[str, float]:
    """Kernel time per op type, in ms per run, largest first.

    Shows where a module's time goes when it runs far from the matmul peak (a Softmax or a
    Gather that costs as much as the GEMMs). The profiler's per-node overhead inflates
    small kernels, so read the shares, not the absolute times.
    """
    session = ort_session(model, threads=threads, profile_prefix=str(workdir / "ort-profile"))
    warm_up = PROFILE_WARM_UP_RUNS
    for _ in range(warm_up + runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    # count only the kernels of the timed runs: those from the first run after the warm-up on
    run_starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    assert len(run_starts) == warm_up + runs, (
        f"expected {warm_up + runs} model_run events, got {len(run_starts)}"
    )
    start_us = run_starts[warm_up]
    totals: dict[str, float] = {}
    for event in events:
        if (
            event.get("cat") == "Node"
            and event["name"].endswith("_kernel_time")
            and event["ts"] >= start_us
        ):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1e3 / runs
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def describe_profile(kernel_ms: dict[str, float], top: int = TOP_OPS) -> str:
    """One line: the op types' shares of kernel time, and the share of the GEMM-class kernels."""
    total = sum(kernel_ms.values())
    if total <= 0:
        return "no kernel events"
    shares = [f"{op} {100 * ms / total:.0f}%" for op, ms in list(kernel_ms.items())[:top]]
    gemm = sum(ms for op, ms in kernel_ms.items() if op in GEMM_OPS)
    return (
        f"kernels {total:.3f} ms/run: {', '.join(shares)}; "
        f"matmul/conv kernels {100 * gemm / total:.0f}% of kernel time"
    )
