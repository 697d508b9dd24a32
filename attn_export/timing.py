"""Latency of several functions, timed side by side in alternating rounds.

Absolute times on a shared machine are noisy; the figures that count are ratios measured in
the same run. Alternating rounds let drift in the machine's load hit every function alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ROUNDS = 5  # alternating rounds per function
WARM_UP_CALLS = 3  # untimed calls before the first round: allocations, thread pools, caches
# Both runtimes keep their worker threads spinning for a while after a call; left alone, ORT's
# spinning threads would steal the cores from PyTorch's next round and the reverse. A pause and
# a few untimed calls start each round from steady state.
SETTLE_SECONDS = 0.05
SETTLE_CALLS = 2
# A round runs for at least this long and this many calls: many samples of a fast function,
# a few of a slow one.
MIN_ROUND_SECONDS = 0.05
MIN_ROUND_SAMPLES = 3
TAIL_PERCENTILE = 90  # the p90 beside the median: how far the slow calls stray


@dataclass
class Latency:
    median_ms: float
    p90_ms: float
    samples: int


def _time_round(fn: Callable[[], object]) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < MIN_ROUND_SECONDS or len(samples) < MIN_ROUND_SAMPLES:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def time_side_by_side(
    functions: dict[str, Callable[[], object]], rounds: int = ROUNDS
) -> dict[str, Latency]:
    """Warm each function up, then time them in alternating rounds."""
    for fn in functions.values():
        for _ in range(WARM_UP_CALLS):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in functions}
    for _ in range(rounds):
        for key, fn in functions.items():
            time.sleep(SETTLE_SECONDS)
            for _ in range(SETTLE_CALLS):
                fn()
            samples[key].extend(_time_round(fn))
    return {
        k: Latency(
            float(np.median(v) * 1e3), float(np.percentile(v, TAIL_PERCENTILE) * 1e3), len(v)
        )
        for k, v in samples.items()
    }
