"""TensorRT's log, kept so failures can say in one line what TensorRT reported."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ...errors import first_text_line

# At most this many of the latest logged errors go into an exception's text.
SHOWN_ERRORS = 5


@functools.cache
def recording_logger() -> Any:
    """One TensorRT logger for the process; it keeps ERROR messages for our exception texts.

    Older TensorRT treated the logger as a process-wide singleton, so every builder and
    runtime here shares this one and reads only the messages added during its own call
    (an :class:`ErrorWindow`).
    """
    import tensorrt as trt

    class RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)

    return RecordingLogger()


class ErrorWindow:
    """The errors a recording logger collects from the moment this window opens."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.start = len(logger.errors)

    def messages(self) -> list[str]:
        return self.logger.errors[self.start :]

    def text(self) -> str:
        """The latest errors since the window opened, first line of each, on one line."""
        return joined_errors(self.messages())


def joined_errors(messages: Sequence[str]) -> str:
    shown = messages[-SHOWN_ERRORS:]
    return "; ".join(first_text_line(m) for m in shown) or "no TensorRT error was logged"


def parser_errors(parser: Any, logged: Sequence[str]) -> str:
    """Every error of an ONNX parser, with node index, name and op, on one line."""
    described = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node()}" if error.node() >= 0 else "graph"
        if error.node_name():
            where += f" {error.node_name()!r}"
        if error.node_operator():
            where += f" (op {error.node_operator()})"
        described.append(f"{where}: {first_text_line(error.desc())} [{error.code()}]")
    if not described:
        return f"the parser gave no error details; TensorRT log: {joined_errors(logged)}"
    return f"{len(described)} error(s): " + "; ".join(described)
