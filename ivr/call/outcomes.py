"""How a call ended: an outcome and the DOMAIN.md rule id that decided it."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    COMPLETED = "completed"  # accepted, ended by a hang-up (DIS-HANGUP)
    LIMITED = "limited"  # accepted, ended by the time limit or the funds (DIS-LIMIT, DIS-FUNDS)
    DISCONNECTED = "disconnected"  # accepted, ended by a detector rule (DIS-HOLD, DIS-3WAY, ...)
    DROPPED = "dropped"  # accepted, ended by a system drop (DIS-MEDIA)
    REFUSED = "refused"  # the called party pressed the refuse key (ACC-2)
    BLOCKED = "blocked"  # the called party pressed the block key (ACC-6)
    NO_INPUT = "no_input"  # no valid key after the last attempt (ACC-3)
    ABANDONED = "abandoned"  # a party hung up before acceptance (ACC-4: free)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    RESTRICTED = "restricted"  # refused before the conversation: BLK-*, caller not allowed
    FAILED = "failed"  # a failure before the conversation (trunk, ledger, protocol): free

    @property
    def billable(self) -> bool:
        return self in (Outcome.COMPLETED, Outcome.LIMITED, Outcome.DISCONNECTED, Outcome.DROPPED)


# Reason codes that are not DOMAIN.md rule ids (identification and system failures).
IDENT_PIN = "IDENT-PIN"  # no valid PIN after the allowed attempts
IDENT_UNKNOWN = "IDENT-UNKNOWN"  # the gateway's caller id is not on the roster
IDENT_STATUS = "IDENT-STATUS"  # the caller is released or suspended
SYS_PROTOCOL = "SYS-PROTOCOL"  # an event the transition table does not allow
SYS_LEDGER = "SYS-LEDGER"  # the ledger did not answer in time
SYS_ROSTER = "SYS-ROSTER"  # the roster did not answer in time
SYS_TRUNK = "SYS-TRUNK"  # the trunk failed the call (5xx, 403, ...)
SYS_NUMBER = "SYS-NUMBER"  # the called number is not E.164
SYS_SHUTDOWN = "SYS-SHUTDOWN"  # the engine was stopped (SIGTERM) during the call
