"""Parsers for the command line's ``--shape`` and ``--set`` values."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

from .errors import UsageError

Shape = tuple[int, ...]  # an input's dimensions, as --shape gives them
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_DIM = 1 << 20  # a sanity bound; no attention block takes a million-wide axis
# JSON spellings that Python's literal syntax lacks.
_JSON_WORDS = {"true": True, "false": False, "null": None}


def shape_text(shape: Sequence[int]) -> str:
    """``(1, 512, 7, 7)`` -> ``"1,512,7,7"``, as ``--shape`` takes it."""
    return ",".join(map(str, shape))


def shapes_text(shapes: Sequence[Sequence[int]]) -> str:
    return " ".join(shape_text(s) for s in shapes)


def dims_text(dims: Sequence[int | str | None]) -> str:
    """Dims for a message, as Python writes a tuple: ``(1, 64, 7, 7)``, ``(batch, 4)``,
    ``(?, 4)`` for an unknown dim, ``(5,)`` for rank 1."""
    body = ", ".join("?" if d is None else str(d) for d in dims)
    return f"({body},)" if len(dims) == 1 else f"({body})"


def parse_shape(text: str) -> Shape:
    """``"1,512,7,7"`` (also ``1x512x7x7`` or ``[1, 512, 7, 7]``) -> ``(1, 512, 7, 7)``."""
    body = text.strip().strip("[]()")
    parts = [p.strip() for p in re.split(r"[,x×]", body)] if body else []
    if not parts or any(p == "" for p in parts):
        raise UsageError(
            f"--shape {text!r}: expected comma-separated positive integers, e.g. 1,512,7,7"
        )
    dims = []
    for part in parts:
        if not re.fullmatch(r"[+-]?\d+", part):
            raise UsageError(
                f"--shape {text!r}: {part!r} is not an integer; expected e.g. 1,512,7,7"
            )
        value = int(part)
        if value <= 0:
            raise UsageError(f"--shape {text!r}: dimensions must be positive, got {value}")
        if value > MAX_DIM:
            raise UsageError(f"--shape {text!r}: dimension {value} is larger than {MAX_DIM}")
        dims.append(value)
    return tuple(dims)


# The axes --dynamic may name (the registry's DYNAMIC_AXES; repeated here so that parsing
# a command line imports neither torch nor the zoo).
AXES = ("batch", "height", "width", "tokens")
# The bounds of a dynamic profile (--min-shape, --opt-shape, --max-shape), in order.
PROFILE_BOUNDS = ("min", "opt", "max")


def parse_axes(text: str) -> tuple[str, ...]:
    """``"batch,height"`` -> ``("batch", "height")``."""
    axes = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in axes if a not in AXES]
    if not axes or unknown:
        raise UsageError(
            f"--dynamic {text!r}: expected a comma-separated subset of {', '.join(AXES)}"
        )
    return axes


def parse_scales(text: str) -> tuple[float, ...]:
    """``"1,10,100"`` -> ``(1.0, 10.0, 100.0)``."""
    try:
        scales = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(
            f"--fp16-scales {text!r}: expected comma-separated numbers, e.g. 1,10,100"
        ) from None
    if not scales:
        raise UsageError(f"--fp16-scales {text!r}: expected comma-separated numbers, e.g. 1,10,100")
    return scales  # positive and finite: checked with every other option (options.validate_options)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON or a Python literal; anything else stays a string."""
    stripped = text.strip()
    if stripped in _JSON_WORDS:
        return _JSON_WORDS[stripped]
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return stripped


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"kernels=[1,3]"`` -> ``("kernels", [1, 3])``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _NAME.match(key):
        raise UsageError(
            f"--set {text!r}: expected KEY=VALUE with a Python identifier as KEY, e.g. reduction=8"
        )
    if value.strip() == "":
        raise UsageError(f"--set {text!r}: the value is empty")
    return key, parse_value(value)
