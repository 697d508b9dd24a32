"""What an export run is asked to do, and the checks on it that run before any work."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .draws import FRESH_KINDS
from .errors import UsageError
from .parsing import Shape, shapes_text

DEFAULT_OUT_DIR = Path("attn_export_out")
# The torch.onnx exporters; "auto" tries TorchScript, then dynamo (see onnx_export).
EXPORTERS = ("auto", "torchscript", "dynamo")
DEFAULT_EXPORTER = "auto"
DEFAULT_SEED = 0  # of the random inputs and the initial weights
# Opsets (the reasons are in onnx_export's docstring): 17 is the first with a one-node
# LayerNormalization; 9 is TensorRT's documented floor, 20 the TorchScript exporter's ceiling.
# Here, not in onnx_export, so that the command line reads them without importing torch.
DEFAULT_OPSET = 17
MIN_OPSET = 9
MAX_OPSET = 20
DEFAULT_VERIFY_DRAWS = len(FRESH_KINDS)  # one fresh draw of each kind
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class ExportOptions:
    shapes: Sequence[Shape] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None
    out_dir: Path = DEFAULT_OUT_DIR
    opset: int = DEFAULT_OPSET
    atol: float | None = None
    rtol: float | None = None
    trt: bool = False
    fp16: bool = False
    seed: int = DEFAULT_SEED
    threads: int | None = None
    nhwc: bool = False
    exporter: str = DEFAULT_EXPORTER
    name: str | None = None  # artifact base name (default: registry name or the model's class)
    inputs: Sequence[Path] = ()  # .npz files with the user's own inputs: verified, and drive --fp16
    verify_draws: int = DEFAULT_VERIFY_DRAWS  # fresh random draws at the export shapes
    dynamic: Sequence[str] = ()  # axes left symbolic: batch, height, width, tokens
    min_shapes: Sequence[Shape] = ()
    opt_shapes: Sequence[Shape] = ()
    max_shapes: Sequence[Shape] = ()
    fp16_scales: Sequence[float] | None = None  # input scales of the fp16 check (default 1,10,100)


def validate_options(options: ExportOptions) -> None:
    if not MIN_OPSET <= options.opset <= MAX_OPSET:
        raise UsageError(
            f"--opset {options.opset} is outside the supported range {MIN_OPSET}-{MAX_OPSET}"
        )
    for label, value in (("--atol", options.atol), ("--rtol", options.rtol)):
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise UsageError(f"{label} must be a finite number >= 0, got {value}")
    if options.exporter not in EXPORTERS:
        raise UsageError(f"--exporter {options.exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if options.name is not None and not _SAFE_NAME.match(options.name):
        raise UsageError(
            f"--name {options.name!r}: use letters, digits, '_', '-' and '.' (it names files)"
        )
    if options.fp16_scales is not None and not all(
        np.isfinite(s) and s > 0 for s in options.fp16_scales
    ):
        raise UsageError("--fp16-scales must be positive numbers, e.g. 1,10,100")
    if options.verify_draws < 1:
        raise UsageError("at least one fresh verification draw is needed")
    if (options.min_shapes or options.opt_shapes or options.max_shapes) and not options.dynamic:
        raise UsageError(
            "--min-shape/--opt-shape/--max-shape describe a dynamic profile: give --dynamic too"
        )
    check_out_dir(Path(options.out_dir))


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")


def prepare_out_dir(out: Path) -> None:
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create --out folder {str(out)!r}: {error.strerror or error}"
        ) from None
    probe = out / ".attn-export-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write into --out folder {str(out)!r}: {error.strerror or error}"
        ) from None


def check_output_file(path: Path, flag: str, suffix: str | None = None) -> None:
    """Before a long run: a file option must name a file that can be written."""
    if suffix and path.suffix.lower() != suffix:
        raise UsageError(
            f"{flag} writes {suffix[1:].upper()}; give a file name ending in {suffix}"
            f" (got {str(path)!r})"
        )
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
    float32_bytes = np.dtype(np.float32).itemsize
    needed = sum(float32_bytes * int(np.prod(shape, dtype=np.float64)) for shape in shapes)
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): let allocation decide
        return
    if needed > INPUT_MEMORY_FRACTION * physical:
        raise UsageError(
            f"inputs {shapes_text(shapes)} take {needed / 2**30:.1f} GiB as float32, more than"
            f" a quarter of this machine's {physical / 2**30:.0f} GiB of memory;"
            " give a smaller --shape"
        )
