"""The fp16 ONNX graph for strongly typed TensorRT, and a CPU check that judges it like a GPU.

TensorRT 11 builds strongly typed networks only: the precision of every layer is the type
of its ONNX tensors, so an fp16 engine needs an fp16 graph. :func:`convert_to_fp16` writes
one: weights and activations in float16, graph inputs and outputs in float32 (a Cast at
each edge), and the nodes fp16 would break kept in float32 between Cast nodes ("fp32
islands").

The nodes are chosen on tuning draws and the graph is judged on check draws the search
never saw (each draw multiplied by each input scale, 1, 10 and 100 by default), so the
islands hold beyond the draws they were chosen on. The rules (:mod:`.islands`,
:mod:`.decisions`) judge what generalises: a tensor's growth with the input scale rather
than one draw's maximum, a decision's margin against the float16 error of what it compares
rather than one draw's flips. The check (:func:`simulate_fp16_storage`, :mod:`.simulate`)
models a GPU's float16 storage on the CPU.

Files: ``graph`` (the fp32 graph and its types), ``convert`` (the fp16 graph for a set of
fp32 nodes), ``simulate`` (float16 storage on ONNX Runtime CPU), ``draws`` (tuning and
check inputs), ``islands`` and ``decisions`` (the rules), ``observe`` (one probe's
simulation, summarised), ``search`` (the rounds), ``result`` (checks and the manifest
section).
"""

from .draws import DEFAULT_CHECK_DRAWS, DEFAULT_TUNING_DRAWS, Draw
from .result import DEFAULT_MIN_COSINE, MIN_FP16_WEIGHT_FRACTION, Fp16Check, Fp16Result
from .search import DEFAULT_MAX_ROUNDS, DEFAULT_SCALES, convert_to_fp16
from .simulate import simulate_fp16_storage

__all__ = [
    "DEFAULT_CHECK_DRAWS",
    "DEFAULT_MAX_ROUNDS",
    "DEFAULT_MIN_COSINE",
    "DEFAULT_SCALES",
    "DEFAULT_TUNING_DRAWS",
    "MIN_FP16_WEIGHT_FRACTION",
    "Draw",
    "Fp16Check",
    "Fp16Result",
    "convert_to_fp16",
    "simulate_fp16_storage",
]
