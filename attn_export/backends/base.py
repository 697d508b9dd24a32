"""The backend interface and the two backends every install has: PyTorch and ONNX Runtime."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import EnvironmentMissingError

if TYPE_CHECKING:
    import onnxruntime

Feeds = Mapping[str, np.ndarray]


def ort_session(
    model: str | bytes,
    provider: str = "CPUExecutionProvider",
    threads: int | None = None,
    optimize: bool = True,
    profile_prefix: str | None = None,
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session, quiet, on one provider.

    ``threads`` pins the intra-op pool (and one inter-op thread) so timings and sums repeat;
    ``optimize=False`` keeps the graph as written (e.g. rounding Cast pairs it would fold);
    ``profile_prefix`` turns on ONNX Runtime's profiler, writing there.
    """
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        raise EnvironmentMissingError(
            f"ONNX Runtime has no {provider} here"
            f" (available: {', '.join(ort.get_available_providers())});"
            " install onnxruntime-gpu (the `gpu` extra) on a CUDA host"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, options, providers=[provider])


class Backend(abc.ABC):
    """Runs one model on named numpy inputs and returns its outputs in graph order."""

    #: short id written into manifests and reports, e.g. "torch", "onnxruntime-cpu", "tensorrt-fp32"
    name: str = "backend"

    @abc.abstractmethod
    def run(self, feeds: Feeds) -> list[np.ndarray]:
        """Run once on ``feeds`` (input name -> array) and return every output."""


class TorchBackend(Backend):
    """PyTorch eager, the reference every other backend is compared against."""

    name = "torch"

    def __init__(
        self, module: torch.nn.Module, input_names: Sequence[str], device: str = "cpu"
    ) -> None:
        self.module = module.eval().to(device)
        self.input_names = list(input_names)
        self.device = device

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        args = [
            torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device)
            for n in self.input_names
        ]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().float().cpu().numpy() for o in outs]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on a given execution provider (CPU by default, CUDA with onnxruntime-gpu)."""

    def __init__(
        self,
        model: str | bytes,
        provider: str = "CPUExecutionProvider",
        threads: int | None = None,
    ) -> None:
        self.session = ort_session(model, provider, threads)
        self.provider = provider
        self.name = "onnxruntime-" + provider.replace("ExecutionProvider", "").lower()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        return self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
