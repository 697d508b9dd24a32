"""One small backend per runtime, all behind :class:`Backend`.

``torch`` and ``onnxruntime`` import eagerly (they are dependencies); TensorRT is imported
only when a TensorRT backend is built, so CPU installs work without it.
"""

from .base import Backend, OnnxRuntimeBackend, TorchBackend

__all__ = ["Backend", "OnnxRuntimeBackend", "TorchBackend"]
