"""A small error tree.

Domain failures (a refusal, a block) are values, not exceptions. Exceptions are for bad input
(``InputError``: exit code 2 from the CLI, naming the file, line or key) and protocol breaches.
Protocol errors follow h11: *local* (we broke the protocol) vs *remote* (the peer did); SIP
errors carry the status to answer with.
"""

from __future__ import annotations


class IvrError(Exception):
    """Base of every error the engine raises on purpose."""


class InputError(IvrError):
    """Bad input from a user or a file: the CLI prints it and exits 2.

    ``where`` names the file (and line or key) so the operator can fix it.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ProtocolError(IvrError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. ``status``/``reason`` is the SIP answer to give, if any."""

    def __init__(self, message: str, *, status: int = 400, reason: str = "Bad Request") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)
