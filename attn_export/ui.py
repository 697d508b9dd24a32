"""What the commands show besides their printed lines: a progress bar, PNG figures."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Item = TypeVar("Item")


def with_progress(items: Sequence[Item], label: str, enabled: bool) -> Iterator[Item]:
    """Yield ``items`` under a rich progress bar (when ``enabled``: a terminal is watching)."""
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            bar.update(task, description=f"{label} {getattr(item, 'name', item)}")
            yield item
            bar.advance(task)


def save_figure(fig: Figure, path: Path, dpi: int) -> None:
    """Render a matplotlib figure to PNG in memory, then write it atomically."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
