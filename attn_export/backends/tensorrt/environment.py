"""Whether TensorRT can run here, its major version, and the GPU an engine is built for.

TensorRT is imported inside these functions only, so importing the backend works on CPU
installs. Device buffers and streams come from torch's CUDA (a CUDA build of torch is what
GPU hosts have), so no pycuda/cuda-python is needed.
"""

from __future__ import annotations

from typing import Any

import torch

from ...errors import EnvironmentMissingError, first_line

INSTALL_HINT = "pip install 'attn-export[gpu]'"


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT imports and torch sees a CUDA device; otherwise why not, in one line."""
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            return f"tensorrt is not installed ({INSTALL_HINT})"
        return f"tensorrt cannot be imported: {first_line(exc)} ({INSTALL_HINT})"
    except (ImportError, OSError) as exc:  # a wheel without its libnvinfer, a CUDA mismatch, ...
        return f"tensorrt cannot be imported: {first_line(exc)} ({INSTALL_HINT})"
    if torch.version.cuda is None:
        return (
            f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None); "
            "install a CUDA build of torch"
        )
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or EnvironmentMissingError saying why it is unusable."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise EnvironmentMissingError(reason)
    import tensorrt

    return tensorrt


def trt_major_version(trt_version: str) -> int:
    """``"10.13.3.9"`` -> 10."""
    return int(trt_version.split(".")[0])


def current_gpu() -> tuple[str, str]:
    """The current CUDA device's name and compute capability (e.g. ``"8.9"``)."""
    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), f"{major}.{minor}"
