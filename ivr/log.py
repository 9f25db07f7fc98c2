"""structlog setup: one pipeline, JSON lines in ``serve``, readable lines in a terminal.

Call id and leg are bound through contextvars (``bind_call``) so every line of a call carries them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


class _StderrLogger:
    """Writes each line to the *current* ``sys.stderr`` (pytest's capture replaces it between tests)."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        print(message, file=self._stream or sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


def configure(*, json: bool = False, level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog once for the process."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=lambda *args: _StderrLogger(stream),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def bind_call(call_id: str, leg: str | None = None) -> Iterator[None]:
    """Bind ``call_id`` (and ``leg``) to every log line emitted inside the block."""
    values: dict[str, str] = {"call_id": call_id}
    if leg is not None:
        values["leg"] = leg
    with structlog.contextvars.bound_contextvars(**values):
        yield
