"""``attn-export bench``: eager vs ONNX Runtime timings, FLOPs, the ORT profile summary and the
FLOP growth law of a size sweep; through the CLI for registry and user models."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attn_export.bench import SWEEP_SIDES, describe_profile, flop_growth, sweep_module


def positions(entry: Mapping[str, object]) -> list[int]:
    """The number of positions at each size a sweep ran."""
    points = entry["points"]
    assert isinstance(points, list)
    return [p["positions"] for p in points]


def term_shares(growth: Mapping[str, object]) -> dict[str, float]:
    shares = growth["term_shares"]
    assert isinstance(shares, dict)
    return shares


def test_bench_takes_a_user_model_and_other_shapes(cli, user_project):
    run = cli(
        "bench", "userproj.tiny:build",
        "--shape", "1,3,64,64",
        "--set", "num_classes=3",
        "--json", "b.json",
        "--threads", "1",
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    (row,) = json.loads((user_project / "b.json").read_text())["rows"]
    # named as export names it
    assert row["name"] == "TinyDetector" and row["shapes"] == [[1, 3, 64, 64]]
    # the FLOPs are those of the model built with --set, at --shape
    build = importlib.import_module("userproj.tiny").build
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        build(num_classes=3).eval()(torch.zeros(1, 3, 64, 64))
    assert row["flops"] == counter.get_total_flops()
    registry = cli(
        "bench", "cbam", "--shape", "1,512,14,14", "--set", "reduction=8", "--json", "c.json",
        timeout=600,
    )  # fmt: skip
    assert registry.returncode == 0, registry.stdout + registry.stderr
    (row,) = json.loads((user_project / "c.json").read_text())["rows"]
    assert row["shapes"] == [[1, 512, 14, 14]]


def test_bench_prints_ratios_and_writes_json_and_plot(cli, tmp_path):
    run = cli(
        "bench", "se", "eca", "--json", "b.json", "--plot", "b.png", "--sweep", "--profile",
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "geometric mean eager/ORT time ratio" in run.stdout and "matmul peak" in run.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["se", "eca"]
    for row in data["rows"]:
        assert row["eager"]["median_ms"] > 0 and row["ort"]["median_ms"] > 0
        assert row["ratio"] == pytest.approx(row["eager"]["median_ms"] / row["ort"]["median_ms"])
        # --profile: ORT's own per-op kernel times; both modules pool with ReduceMean
        kernels = row["ort_kernel_ms"]
        assert "ReduceMean" in kernels and all(ms > 0 for ms in kernels.values()), kernels
        assert f"profile {row['name']}: kernels" in run.stdout
    assert {s["name"] for s in data["sweep"]} == {"se", "eca"}
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_summary_gives_shares_and_the_gemm_share():
    line = describe_profile({"MatMul": 3.0, "Softmax": 1.0, "Gather": 0.5, "FusedMatMul": 0.5})
    assert line.startswith(
        "kernels 5.000 ms/run: MatMul 60%, Softmax 20%, Gather 10%, FusedMatMul 10%"
    )
    assert line.endswith("matmul/conv kernels 70% of kernel time")
    assert describe_profile({}) == "no kernel events"


def test_bench_needs_names_or_all(cli):
    run = cli("bench")
    assert run.returncode == 2 and "--all" in run.stderr


def test_sweep_tells_quadratic_from_linear_and_constant():
    growth = {
        name: sweep_module(name)
        for name in ("simplified_self_attention", "crisscross", "bam", "se")
    }
    # self-attention's N x N scores; criss-cross: each pixel attends along its row and column,
    # N * (H + W - 1); BAM's convs grow with H*W; SE's FC layers see only the pooled vector
    assert {name: entry["growth"] for name, entry in growth.items()} == {
        "simplified_self_attention": "quadratic",
        "crisscross": "N^1.5",
        "bam": "linear",
        "se": "constant",
    }, {name: entry["term_shares"] for name, entry in growth.items()}
    assert positions(growth["simplified_self_attention"]) == [49, 196, 784, 1764, 3136]
    assert positions(growth["bam"]) == [49, 196, 784, 1764, 3136]  # 7x7 .. 56x56
    fixed = sweep_module("gfnet")  # its filter is built for 14x14 tokens: one size, no growth law
    assert positions(fixed) == [196] and fixed["growth"] is None


def test_flop_growth_splits_exact_power_laws():
    sides = np.array(SWEEP_SIDES, dtype=np.int64)
    n = sides * sides
    # equal linear and quadratic terms at 300 positions
    mixed = flop_growth(list(n), list(300 * n + n * n))
    assert mixed["growth"] == "quadratic"
    assert term_shares(mixed)["quadratic"] == pytest.approx(3136 / (300 + 3136), abs=1e-6)
    assert mixed["flop_exponent"] == pytest.approx(
        np.log((300 * 3136 + 3136**2) / (300 * 1764 + 1764**2)) / np.log(3136 / 1764)
    )
    criss_cross = flop_growth(list(n), list(n * (2 * sides - 1)))  # N * (H + W - 1)
    assert criss_cross["growth"] == "N^1.5" and term_shares(criss_cross)["linear"] < 0
    # padding 0: (H - 2)^2 outputs
    shrinking_conv = flop_growth(list(n), list(9 * (sides - 2) ** 2))
    assert shrinking_conv["growth"] == "linear"
    assert flop_growth(list(n), list(7 * n))["growth"] == "linear"
    assert flop_growth(list(n), [5] * 5)["growth"] == "constant"
    assert flop_growth(list(n), [0] * 5)["growth"] == "constant"
    # counts rounded by strides are no sum of powers: the last step's exponent decides
    rounded = flop_growth(list(n), [100 * (s // 3) ** 2 for s in SWEEP_SIDES])
    assert rounded["growth"] == "linear" and rounded["term_shares"] == {}
    assert flop_growth([49], [10])["growth"] is None  # one size says nothing about growth
