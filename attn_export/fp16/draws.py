"""Input draws: the tuning draws the island search sees and the check draws the verdict uses.

A draw is one set of unit-scale inputs; a probe is a draw multiplied by one input scale.
Random draws are standard normal at the graph's static input shapes; a graph with symbolic
dims (a dynamic batch) needs the caller's draws, whose shapes may differ from draw to draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..parsing import dims_text
from .graph import FLOAT, FloatGraph, declared_shape, static_shape

DEFAULT_TUNING_DRAWS = 3
DEFAULT_CHECK_DRAWS = 3
CHECK_SEED_OFFSET = 1000  # check draws come from seeds the tuning draws never use


@dataclass
class Draw:
    """One set of unit-scale inputs."""

    label: str  # e.g. "seed 1001", "inputs.npz[0]"
    feeds: dict[str, np.ndarray]  # graph input name -> float32 array (any shape the graph accepts)


@dataclass
class Probe:
    """A draw at one input scale: what one simulation run sees."""

    draw: str
    scale: float
    feeds: dict[str, np.ndarray]

    @property
    def label(self) -> str:
        return f"{self.draw} x{self.scale:g}"


DrawsArgument = Sequence[Draw] | Mapping[str, np.ndarray] | None


def tuning_seeds(seed: int) -> list[int]:
    return [seed + i for i in range(DEFAULT_TUNING_DRAWS)]


def check_seeds(seed: int) -> list[int]:
    return [seed + CHECK_SEED_OFFSET + i for i in range(DEFAULT_CHECK_DRAWS)]


def resolve_draws(
    graph: FloatGraph, given: DrawsArgument, seeds: Sequence[int], role: str
) -> list[Draw]:
    """The caller's draws, checked against the graph, or random ones from ``seeds``.

    A plain mapping of feeds is taken as one draw (the converter's earlier interface).
    """
    if given is None:
        return random_draws(graph, seeds, role)
    draws = [Draw("given feeds", dict(given))] if isinstance(given, Mapping) else list(given)
    if not draws:
        raise UsageError(f"no {role} draws given")
    return [_checked(graph, draw) for draw in draws]


def random_draws(graph: FloatGraph, seeds: Sequence[int], role: str = "tuning") -> list[Draw]:
    """Standard-normal draws at the graph's static input shapes, one per seed."""
    shapes = {}
    for value in graph.inputs:
        shape = static_shape(value)
        if value.type.tensor_type.elem_type != FLOAT or shape is None:
            raise UsageError(
                f"input {value.name!r} is not a float32 tensor of static shape"
                f" {dims_text(declared_shape(value) or ['?'])}:"
                f" pass {role} draws to convert_to_fp16"
            )
        shapes[value.name] = shape
    draws = []
    for seed in seeds:
        generator = np.random.default_rng(seed)
        feeds = {
            name: generator.standard_normal(shape, dtype=np.float32)
            for name, shape in shapes.items()
        }
        draws.append(Draw(f"seed {seed}", feeds))
    return draws


def probes(draws: Sequence[Draw], scales: Sequence[float]) -> list[Probe]:
    """Every draw at every scale, scale by scale; only float inputs are scaled."""
    return [
        Probe(
            draw.label,
            float(scale),
            {
                k: v * np.float32(scale) if v.dtype == np.float32 else v
                for k, v in draw.feeds.items()
            },
        )
        for scale in scales
        for draw in draws
    ]


def _checked(graph: FloatGraph, draw: Draw) -> Draw:
    """``draw`` with exactly the graph's inputs, float ones as float32, at shapes it accepts."""
    if not isinstance(draw, Draw):
        raise UsageError(f"draws must be fp16.Draw objects, got {type(draw).__name__}")
    missing = [n for n in graph.input_names if n not in draw.feeds]
    if missing:
        raise UsageError(f"draw {draw.label!r} lacks graph inputs: {', '.join(missing)}")
    feeds = {}
    for value in graph.inputs:
        array = np.asarray(draw.feeds[value.name])
        expected = declared_shape(value)
        if expected is not None and not (
            array.ndim == len(expected)
            and all(e is None or e == d for e, d in zip(expected, array.shape))
        ):
            raise UsageError(
                f"draw {draw.label!r}: input {value.name!r} has shape {dims_text(array.shape)},"
                f" the graph takes {dims_text(expected)}"
            )
        feeds[value.name] = array.astype(np.float32) if array.dtype.kind == "f" else array
    return Draw(draw.label, feeds)
