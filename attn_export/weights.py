"""Load a user's trained weights without running any code from the file.

``.safetensors`` files hold only tensors. ``.pt``/``.pth``/``.bin`` state dicts are read
with ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain
containers and refuses anything else, so a file that would run code when unpickled is
rejected before any of it runs.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError, first_line

SAFETENSORS_SUFFIXES = {".safetensors"}
# Checkpoints often wrap the state dict; accept the usual wrappers.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Hash a file a mebibyte at a time, so a large checkpoint is never in memory whole.
_HASH_BLOCK_BYTES = 1 << 20
# Redrawn zero parameters use their own random stream, apart from the model's initial
# weights (--seed) and from every input draw (see draws.py).
REDRAW_SEED_OFFSET = 7919
# A 1-D parameter (a scale or bias) has no fan-in of its own: draw it as if fan-in were 4
# (std 0.5), large enough that the branch it gates shows in the outputs.
ONE_D_FAN_IN = 4


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise UsageError(f"weights file {str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(f"weights path {str(path)!r} is not a file")
    if path.suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    return _unwrap(_read_torch_file(path), path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UsageError(
            f"cannot read weights {str(path)!r}: not a valid safetensors file ({first_line(error)})"
        ) from None


def _read_torch_file(path: Path) -> object:
    damaged = f"cannot read weights {str(path)!r}: corrupt or truncated, or not a torch state dict"
    try:
        with warnings.catch_warnings():  # damaged files make torch warn before it fails; we say why
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch wraps every weights-only refusal in one long message; the GLOBAL line names
        # what the file tried to import (code), anything else is a damaged file.
        globals_line = next((line for line in str(error).splitlines() if "GLOBAL" in line), None)
        if globals_line is None:
            raise UsageError(damaged) from None
        raise UsageError(
            f"refused weights {str(path)!r}: it holds pickled objects other than tensors, which"
            f" could run code when loaded ({globals_line.strip()}); save a plain state_dict or a"
            " .safetensors file"
        ) from None
    except Exception as error:
        # weights_only=True runs no code, so whatever else fails is the file: damaged bytes fed
        # to the legacy unpickler surface as IndexError, KeyError, struct.error, EOFError, ...
        raise UsageError(f"{damaged} ({first_line(error)})") from None


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise UsageError(
            f"weights {str(path)!r} do not hold a state dict (a mapping of names to tensors)"
        )
    return dict(loaded)


def load_weights(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module`` with ``strict=True``, explaining every mismatch in one line."""
    expected = module.state_dict()
    state = _without_wrapper_prefix(read_state_dict(path), expected)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_clip(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_clip(unexpected)}")
        raise UsageError(
            f"weights {str(path)!r} do not fit {type(module).__name__}: {'; '.join(parts)}"
            " (weights of another module, or other constructor arguments: see --set)"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise UsageError(
            f"weights {str(path)!r} have the wrong shapes for {type(module).__name__}:"
            f" {_clip(wrong)} (file vs module; other constructor arguments? see --set)"
        )
    module.load_state_dict(state, strict=True)


# nn.DataParallel / DistributedDataParallel save every key under the wrapped ``module.``
DATA_PARALLEL_PREFIX = "module."


def _without_wrapper_prefix(
    state: dict[str, torch.Tensor], expected: Mapping[str, object]
) -> dict[str, torch.Tensor]:
    """Keys saved from a DataParallel-wrapped model, with the wrapper's prefix removed."""
    prefix = DATA_PARALLEL_PREFIX
    if (
        state
        and all(k.startswith(prefix) for k in state)
        and not any(k.startswith(prefix) for k in expected)
    ):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _clip(items: list, limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def redraw_zero_parameters(module: nn.Module, seed: int) -> list[str]:
    """Give parameters initialised to all zeros random values; returns their names.

    Some blocks start as the identity (GCNet's and Non-local's last layer is zero-initialised),
    so at their initial weights the attention branch contributes nothing and verification
    could not see it. Without trained weights, such parameters are drawn like a fresh layer's
    (std 1/sqrt(fan-in); 1-D parameters std 0.5), so every branch is exercised.
    """
    generator = torch.Generator().manual_seed(seed + REDRAW_SEED_OFFSET)
    redrawn = []
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.is_floating_point() and parameter.numel() > 0 and not parameter.any():
                fan_in = parameter[0].numel() if parameter.dim() > 1 else ONE_D_FAN_IN
                std = fan_in**-0.5
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
                redrawn.append(name)
    return redrawn
