"""The inputs a graph is exported and verified on.

The exporter traces one draw (standard normal from ``--seed``). Verification never reuses
it: it runs fresh draws from other seeds and of other distributions, so that a graph the
tracer froze on one branch of a data-dependent ``if`` (``if x.mean() > 0``) meets inputs
that take the other branch:

- standard normal, seed + 1001;
- uniform in [0, 1) (image-like: every value positive), seed + 1002;
- normal shifted to mean -1 (mostly negative), seed + 1003;
- normal x 3 (wider range), seed + 1004;

plus, with ``--inputs FILE.npz``, the user's own arrays. With dynamic axes each corner of
the profile gets a fresh draw too. Integer and boolean inputs are never drawn: they come
from ``--inputs``.

The fp16 search draws from one distribution (standard normal; its scales vary the size):
tuning seeds seed + 2001 and 2002, check seeds seed + 3001 and 3002 (and seed + 3102... at
the profile's corners), so its verdict comes from draws it never saw.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError
from .parsing import Shape, shapes_text

# Seed offsets from --seed: each purpose has its own thousand, so no two draws share a stream.
FRESH_SEED_OFFSET = 1000
FRESH_SEED_STEP = 10  # between the successive fresh draws of one call (kinds take +1 to +4)
FP16_TUNING_SEED_OFFSETS = (2001, 2002)
FP16_CHECK_SEED_OFFSETS = (3001, 3002)
# Each profile corner's draws start this many seeds further on, clear of the seeds the
# previous point used.
CORNER_SEED_STRIDE = 100


def corner_seed(seed: int, index: int) -> int:
    """The base seed of the fresh draws at the ``index``-th profile point."""
    return seed + CORNER_SEED_STRIDE * (index + 1)


def fp16_corner_seed(seed: int, index: int) -> int:
    """The fp16 check's seed at the ``index``-th profile corner (seed + 3102, 3103, ...)."""
    return seed + FP16_CHECK_SEED_OFFSETS[-1] + CORNER_SEED_STRIDE + index


@dataclass
class InputDraw:
    label: str  # e.g. "fresh uniform [0, 1) (seed 1002)", "images.npz"
    role: str  # "export", "fresh" or "user"
    arrays: list[np.ndarray]
    point: str = "opt"  # which profile point the shapes are at (dynamic axes)

    def feeds(self, input_names: Sequence[str]) -> dict[str, np.ndarray]:
        return dict(zip(input_names, self.arrays))

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "role": self.role,
            "point": self.point,
            "shapes": [list(a.shape) for a in self.arrays],
        }


Sampler = Callable[[np.random.Generator, Shape], np.ndarray]
FRESH_KINDS: tuple[tuple[str, Sampler], ...] = (
    ("normal", lambda g, s: g.standard_normal(s, dtype=np.float32)),
    ("uniform [0, 1)", lambda g, s: g.random(s, dtype=np.float32)),
    ("normal - 1", lambda g, s: g.standard_normal(s, dtype=np.float32) - np.float32(1.0)),
    ("normal x 3", lambda g, s: g.standard_normal(s, dtype=np.float32) * np.float32(3.0)),
)


def export_draw(shapes: Sequence[Shape], seed: int) -> InputDraw:
    generator = np.random.default_rng(seed)
    arrays = [generator.standard_normal(shape, dtype=np.float32) for shape in shapes]
    return InputDraw(f"export input (normal, seed {seed})", "export", arrays)


def fresh_draws(
    shapes: Sequence[Shape],
    seed: int,
    count: int = len(FRESH_KINDS),
    point: str = "opt",
    first_kind: int = 0,
) -> list[InputDraw]:
    draws = []
    for index in range(count):
        kind_index = (first_kind + index) % len(FRESH_KINDS)
        kind, sample = FRESH_KINDS[kind_index]
        draw_seed = seed + FRESH_SEED_OFFSET + 1 + kind_index + FRESH_SEED_STEP * index
        generator = np.random.default_rng(draw_seed)
        arrays = [sample(generator, tuple(shape)) for shape in shapes]
        draws.append(
            InputDraw(
                f"fresh {kind} (seed {draw_seed}){_where(point, shapes)}", "fresh", arrays, point
            )
        )
    return draws


def normal_draws(
    shapes: Sequence[Shape], seeds: Sequence[int], purpose: str, point: str = "opt"
) -> list[InputDraw]:
    """Standard-normal draws, one per seed (the fp16 search's tuning and check draws)."""
    return [
        InputDraw(
            f"{purpose} normal (seed {seed}){_where(point, shapes)}",
            "fresh",
            [
                np.random.default_rng(seed).standard_normal(tuple(s), dtype=np.float32)
                for s in shapes
            ],
            point,
        )
        for seed in seeds
    ]


def _where(point: str, shapes: Sequence[Shape]) -> str:
    """The label suffix of a draw at a profile corner (nothing at the export shapes)."""
    return "" if point == "opt" else f" at {point} {shapes_text(shapes)}"


def load_user_inputs(
    path: Path, input_names: Sequence[str], parameter_names: Sequence[str]
) -> InputDraw:
    """One draw from an .npz file: arrays by graph input name, forward parameter name, or
    position."""
    arrays = _read_npz(path)
    count = len(input_names)
    for names in (
        list(input_names),
        list(parameter_names),
        [f"arr_{i}" for i in range(count)],
        [str(i) for i in range(count)],
    ):
        if names and all(n in arrays for n in names):
            extra = sorted(set(arrays) - set(names))
            if extra:
                raise UsageError(
                    f"--inputs {str(path)!r}: arrays {', '.join(extra)} match no input"
                    f" (expected {', '.join(names)})"
                )
            return InputDraw(path.name, "user", [_as_input(arrays[n], path, n) for n in names])
    if count == 1 and len(arrays) == 1:
        ((name, array),) = arrays.items()
        return InputDraw(path.name, "user", [_as_input(array, path, name)])
    expected = " or ".join(", ".join(n) for n in (input_names, parameter_names) if n)
    held = ", ".join(sorted(arrays)) or "no arrays"
    raise UsageError(
        f"--inputs {str(path)!r} holds {held}; expected {count} array(s) named {expected},"
        " or saved by position (np.savez(file, a, b))"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"--inputs {str(path)!r} is not a file")
    try:
        with np.load(path, allow_pickle=False) as data:  # never unpickle code
            if not hasattr(data, "files"):
                raise UsageError(
                    f"--inputs {str(path)!r} is a single .npy array; save an .npz (np.savez)"
                )
            return {name: data[name] for name in data.files}
    except UsageError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as error:
        reason = (
            "it holds pickled objects"
            if "pickle" in str(error).lower()
            else "not a valid .npz file"
        )
        raise UsageError(f"cannot read --inputs {str(path)!r}: {reason}") from None


def _as_input(array: np.ndarray, path: Path, name: str) -> np.ndarray:
    if array.dtype == np.float64 or array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind not in "fiub":
        raise UsageError(
            f"--inputs {str(path)!r}: array {name!r} has dtype {array.dtype}; expected numbers"
        )
    return np.ascontiguousarray(array)


@dataclass
class DrawSet:
    """Every draw of one run: the export draw and the verification draws."""

    export: InputDraw
    verify: list[InputDraw] = field(default_factory=list)

    @property
    def all(self) -> list[InputDraw]:
        return [self.export, *self.verify]
