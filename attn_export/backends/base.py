"""The backend interface and the two backends every install has: PyTorch and ONNX Runtime."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import EnvironmentMissingError

Feeds = Mapping[str, np.ndarray]


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
        disable_optimizations: bool = False,
    ) -> None:
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            raise EnvironmentMissingError(
                f"ONNX Runtime has no {provider} here (available: {', '.join(ort.get_available_providers())});"
                " install onnxruntime-gpu (the `gpu` extra) on a CUDA host"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if disable_optimizations:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=[provider])
        self.provider = provider
        self.name = "onnxruntime-" + provider.replace("ExecutionProvider", "").lower()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        return self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
