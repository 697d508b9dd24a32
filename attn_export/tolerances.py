"""Every numerical tolerance attn-export judges a graph by, with the reason for each.

An output passes when two rules hold:

1. Elementwise, numpy's ``allclose``: ``|out - ref| <= atol + rtol * |ref|``. This catches a
   few wrong elements that a norm would average away.
2. Scale-free: the error relative to how much the reference varies,
   ``nrmse = ||out - ref|| / max(||ref - mean(ref)||, NRMSE_FLOOR_SHARE * ||ref||)``, is at
   most ``max_nrmse``. Rule 1 alone passes anything when the outputs are tiny (outputs around
   1e-5 pass atol 1e-4 whatever the graph computes); rule 2 does not depend on the output's
   magnitude: an all-zero graph, a constant graph (the reference's mean), a sign-flipped one
   or one frozen on the wrong branch has an nrmse of 1 or more, far above every bound below.
   The floor share keeps a near-constant output (variation below 1e-3 of its size) from
   turning float rounding into a failure: such an output is judged relative to its size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    max_nrmse: float


# A reference that varies less than this share of its own norm is judged against its norm.
NRMSE_FLOOR_SHARE = 1e-3

# fp32 ONNX Runtime vs PyTorch: the same math in another summation order and other kernels.
# Measured on the 56 zoo modules at their defaults, 4 unseen draws each (`attn-export all`):
# max abs error <= 5.5e-5 (a2; nonlocal 1.5e-4 under its own atol of 3e-4, see its registry
# entry), nrmse <= 2e-5 (ocr_gather; all others <= 2e-6). A wrong graph has an nrmse of
# O(1), so 1e-3 sits 50x above the worst rounding and 1000x below a wrong graph.
FP32 = Tolerance(atol=1e-4, rtol=1e-4, max_nrmse=1e-3)

# The suite's own small hand-written blocks (a few channels, reductions of tens of terms):
# rounding there stays near 1e-7 relative, so tests hold them 10x tighter than FP32 and a
# graph that is wrong by a little still fails.
FP32_SMALL = Tolerance(atol=1e-5, rtol=1e-5, max_nrmse=1e-3)

# Golden parity with the reference implementations (the bound the golden set was made with).
GOLDEN = Tolerance(atol=1e-4, rtol=1e-4, max_nrmse=1e-3)  # tests/zoo/test_golden.py

# TensorRT fp32 (TF32 off) against fp32 PyTorch: only kernel choice differs (summation order
# and tiling of long reductions, e.g. 512 channels x 9 taps or attention over 3136 tokens;
# TensorRT's own fused exp/erf/sigmoid code): ~1e-5 relative in practice, and a wrong layer
# errs by O(1). nrmse 1.4e-2 is what a cosine of 0.9999 allows.
TENSORRT_FP32 = Tolerance(atol=1e-3, rtol=1e-3, max_nrmse=1.4e-2)

# fp16 storage (simulated on CPU, or a TensorRT fp16 engine): 11 significant bits per stored
# tensor (unit roundoff 4.9e-4), so a relative RMS error ~1e-3 over a block; an element near
# zero inherits about one fp16 ulp of the large values it came from (0.016 at 16); atol 5e-2
# is ~3 such ulps. nrmse 4.5e-2 is the error a cosine of 0.999 allows.
# Measured on the zoo with random weights (float16 storage simulated on the CPU): at most 29%
# of this bound (emsa, outputs up to 17).
FP16 = Tolerance(atol=5e-2, rtol=2e-2, max_nrmse=4.5e-2)

# The fp16 graph's own check (float16 storage simulated against the fp32 graph, on draws the
# island search never saw, at each input scale): finite, and cosine >= 0.999 for every output
# (a relative RMS error of at most 4.5%); and at least half the float weights in float16, or
# the "fp16" graph is an fp32 graph in disguise.
FP16_MIN_COSINE = 0.999
MIN_FP16_WEIGHT_FRACTION = 0.5

# ONNX Runtime's CUDA provider against fp32 PyTorch: the provider allows TF32 by default
# (provider option ``use_tf32``), which rounds only matmul/conv inputs to 11 significant bits
# (fp32 storage and accumulation), so its error is at most fp16 storage's: fp16's elementwise
# bounds, fp32 TensorRT's nrmse bound.
ORT_CUDA = Tolerance(atol=5e-2, rtol=2e-2, max_nrmse=1.4e-2)

# TensorRT engines by precision.
TENSORRT = {"fp32": TENSORRT_FP32, "fp16": FP16}


def fp32_tolerance(atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The fp32 bound with a module's or the user's atol/rtol in place of the defaults."""
    return Tolerance(
        atol=FP32.atol if atol is None else atol,
        rtol=FP32.rtol if rtol is None else rtol,
        max_nrmse=FP32.max_nrmse,
    )
