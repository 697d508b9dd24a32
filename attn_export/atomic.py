"""Artifacts appear whole or not at all.

Every file is written under a unique temporary name in its destination folder and renamed
over the final name (``os.replace`` is atomic on one filesystem), so an interrupted run
leaves the previous artifact intact and two concurrent runs never interleave bytes. A
:class:`TempFiles` scope removes the temporaries it made when anything, Ctrl-C included,
leaves it early.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

TEMP_MARKER = ".attn-export-tmp"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class TempFiles:
    """Hands out temporary paths beside their destinations and cleans up the unfinished ones."""

    def __init__(self) -> None:
        self._pending: list[Path] = []

    def temp_for(self, destination: Path) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=TEMP_MARKER, dir=destination.parent
        )
        os.close(fd)
        path = Path(name)
        os.chmod(path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual mode
        self._pending.append(path)
        return path

    def write_bytes(self, destination: Path, data: bytes) -> Path:
        """Write ``data`` to a temporary beside ``destination``; :meth:`commit` renames it."""
        temp = self.temp_for(destination)
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temp

    def commit(self, temp: Path, destination: Path) -> None:
        os.replace(temp, destination)
        self._pending.remove(temp)

    def cleanup(self) -> None:
        for path in self._pending:
            with suppress(FileNotFoundError):
                path.unlink()
        self._pending.clear()

    def __enter__(self) -> TempFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def atomic_write(destination: str | Path, data: bytes | str) -> None:
    """Write one file atomically."""
    destination = Path(destination)
    payload = data.encode() if isinstance(data, str) else data
    with TempFiles() as temps:
        temps.commit(temps.write_bytes(destination, payload), destination)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``, ``docker stop``) like Ctrl-C, so cleanup code runs for both."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on a folder while a set of artifacts is renamed into it.

    Two runs writing the same NAME.onnx and NAME.json at once would otherwise be able to
    interleave their renames and leave one run's graph beside the other's manifest. The lock
    is an ``flock`` on the folder itself, so no lock file is left behind.
    """
    try:
        import fcntl
    except ImportError:  # Windows: renames stay atomic one by one
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
