"""Rows and the storage interface the ledger's logic runs on (memory or SQL).

One set of frozen row types, one small transaction interface: ``ledger.core`` holds all the ledger's
logic once, over :class:`Tx`; ``ledger.memory`` and ``ledger.repo`` (the only SQL) implement it.
Row field names are the SQL column names (ledger.models).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account of the double-entry book (after TigerBeetle: pending/posted debits/credits).

    ``kind`` prepaid: debits may never exceed posted credits. collect: a receivable billed to
    ``billing_number``'s phone bill, bounded by ``credit_limit_minor`` per month. system: the
    other side of every transfer; counters are not kept (computed from the journal).
    """

    id: str
    kind: str  # prepaid | collect | system
    holder: str
    status: str  # active | expired | closed | suspended
    created_at: datetime
    last_activity_at: datetime
    pin_hash: str | None = None
    state: str | None = None  # US state / region for the expiry rule (ACT-5)
    spend_limit_minor: int | None = None
    spend_period: str = "month"
    credit_limit_minor: int | None = None
    billing_number: str | None = None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def available_minor(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def posted_balance_minor(self) -> int:
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class NumberRow:
    id: int | None
    number: str  # E.164
    account_id: str
    number_type: str  # landline | mobile | voip
    active: bool
    added_at: datetime


@dataclass(frozen=True, slots=True)
class CallRow:
    call_id: str
    account_id: str
    kind: str  # prepaid | collect
    facility_id: str
    caller_id: str | None
    called_number: str
    call_type: str
    tariff_json: str  # the tariff used, so the cost is reproducible from the row alone (ACT-2)
    rate_minor_per_min: int
    allowed_seconds: int
    hold_minor: int
    status: str  # held | settled | voided
    authorized_at: datetime
    hold_expires_at: datetime
    billed_seconds: int = 0
    end_reason: str = ""
    system_drop: bool = False
    posted_minor: int = 0
    released_minor: int = 0
    credited_minor: int = 0
    lines_json: str = "[]"
    label: str = ""
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransferRow:
    """Immutable. phase: single | pending | post | void (a post/void names its ``pending_id``)."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    phase: str
    kind: str  # deposit | hold | charge | line | refund | expiry | release
    at: datetime
    pending_id: str | None = None
    call_id: str | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One audited row: a block or its lifting (lifting is a new row, never a delete)."""

    id: int | None
    number: str
    facility_id: str | None
    kind: str  # BLK-PARTY | BLK-FACILITY | BLK-CARRIER | BLK-NEWNUM
    action: str  # block | lift
    reason: str
    who: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PaymentMethodRow:
    id: int | None
    account_id: str
    method: str  # card | cash | money-transfer
    label: str  # e.g. "card ending 4242"
    added_at: datetime


@dataclass(frozen=True, slots=True)
class DepositRow:
    id: int | None
    account_id: str
    amount_minor: int
    method: str
    payment_method_id: int | None
    transfer_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RefundRow:
    id: int | None
    account_id: str
    amount_minor: int
    method: str  # card | check (ACT-5)
    destination: str
    status: str  # issued-to-card | check-requested
    transfer_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class NoticeRow:
    id: int | None
    account_id: str
    days_before: int  # 30 | 7 ; 0 = the expiry itself
    expires_at: datetime
    at: datetime


Row = (
    AccountRow | NumberRow | CallRow | TransferRow | BlockRecord | PaymentMethodRow | DepositRow | RefundRow | NoticeRow
)
R = TypeVar(
    "R",
    AccountRow,
    NumberRow,
    CallRow,
    TransferRow,
    BlockRecord,
    PaymentMethodRow,
    DepositRow,
    RefundRow,
    NoticeRow,
)

# Primary key field of each row type.
KEYS: dict[type[Any], str] = {
    AccountRow: "id",
    NumberRow: "id",
    CallRow: "call_id",
    TransferRow: "id",
    BlockRecord: "id",
    PaymentMethodRow: "id",
    DepositRow: "id",
    RefundRow: "id",
    NoticeRow: "id",
}


@dataclass(frozen=True, slots=True)
class PayerView:
    """What ``authorize`` reads before it decides (one round trip on PostgreSQL where it can)."""

    blocks: tuple[tuple[str, str | None, str], ...]  # the number's (kind, facility_id, action) rows, in order
    account: AccountRow | None  # the number's active prepaid account, locked; None: not a prepaid number
    call: CallRow | None  # the call if already authorized, read after the account lock


class RetryableError(Exception):
    """The transaction was rolled back for a reason a fresh run of it resolves."""


class DuplicateKeyError(RetryableError):
    """An insert hit an existing primary or unique key (a concurrent retry got there first)."""


class StatementsLostError(RetryableError):
    """The connection lost the store's prepared statements (any ROLLBACK through psycopg makes it
    DEALLOCATE ALL); the store prepares them again on the next run."""


class Tx(Protocol):
    """One transaction. Everything read and written inside it is atomic and isolated."""

    def get(self, table: type[R], key: str | int) -> R | None: ...

    def find(self, table: type[R], **eq: Any) -> list[R]:
        """Rows whose fields equal ``eq``, in insertion order."""
        ...

    def insert(self, row: Row) -> None:
        """Raises DuplicateKeyError when the key exists."""
        ...

    def insert_many(self, rows: list[Row]) -> None:
        """Rows of one type, in one statement where the store can."""
        ...

    def update(self, table: type[Any], key: str | int, **fields: Any) -> None: ...

    def lock_call(self, call_id: str) -> CallRow | None:
        """The call, read with its account locked (one statement), or None for an unknown call."""
        ...

    def lock_account(self, account_id: str) -> AccountRow | None:
        """Read an account and keep it locked until the transaction ends."""
        ...

    def apply_balance(
        self,
        account_id: str,
        *,
        debits_pending: int = 0,
        debits_posted: int = 0,
        credits_posted: int = 0,
        require_cover: bool,
        last_activity_at: datetime | None = None,
    ) -> bool:
        """Add to the counters; with ``require_cover`` only if debits stay within posted credits.

        ``last_activity_at`` also restarts the expiry clock (ACT-5) in the same statement.
        Returns False (and changes nothing) when the condition fails: the conditional UPDATE that
        keeps concurrent calls from overdrawing (DESIGN.md section 6).
        """
        ...

    def account_for_number(self, number: str) -> str | None:
        """The active prepaid account that owns ``number``, if any (ACT-1)."""
        ...

    def account_by_number(self, number: str, *, lock: bool) -> AccountRow | None:
        """The active prepaid account of ``number`` (locked when asked), in one statement."""
        ...

    def collect_account_for(self, number: str) -> AccountRow | None: ...

    def posted_since(self, account_id: str, since: datetime) -> int:
        """Sum of posted call charges of the account ended at or after ``since`` (BLK-SPEND)."""
        ...

    def expired_holds(self, now: datetime) -> list[str]:
        """Call ids whose hold is still pending and whose timeout has passed."""
        ...

    # The steps of authorize and settle, each one call so that a store can send it as one
    # statement (PostgreSQL: fewer round trips); the ``*_steps`` functions below give them over the
    # calls above.

    def payer_view(self, number: str, call_id: str) -> PayerView:
        """The block rows of ``number``, then its prepaid account locked, then the call ``call_id``."""
        ...

    def place_hold(self, hold: TransferRow, call: CallRow, *, require_cover: bool) -> Callable[[], bool]:
        """Add ``hold`` to its debit account's pending debits (conditionally, as ``apply_balance``) and
        only then insert the hold transfer and the call. The answer, False when not covered (nothing
        written), is asked once the transaction has ended: PostgreSQL sends the statement with the
        COMMIT (both write nothing else when it is False)."""
        ...

    def resolve_hold(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> None:
        """Settle or void: change the account's counters (unconditionally), insert the post or void
        transfer and its lines, update the call's row with ``call_fields``."""
        ...

    def resolve_held(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> Callable[[], bool]:
        """``resolve_hold`` only if the call is still held, decided in the same statement: the settle
        of a call whose row the caller already knows (it authorized it), without reading it first.
        The answer, False when the call was no longer held (nothing written), is asked once the
        transaction has ended, as ``place_hold``'s: PostgreSQL sends the statement with BEGIN and
        COMMIT, one round trip."""
        ...


# The composite steps over the primitive calls: how memory and SQLite run them, and the reference
# behaviour that PostgreSQL's one-statement versions (ledger.repo) must equal.


def payer_view_steps(tx: Tx, number: str, call_id: str) -> PayerView:
    blocks = tuple((r.kind, r.facility_id, r.action) for r in tx.find(BlockRecord, number=number))
    account = tx.account_by_number(number, lock=True)
    return PayerView(blocks, account, tx.get(CallRow, call_id))  # after the lock: a concurrent retry is visible


def place_hold_steps(tx: Tx, hold: TransferRow, call: CallRow, *, require_cover: bool) -> bool:
    if not tx.apply_balance(hold.debit_account_id, debits_pending=hold.amount_minor, require_cover=require_cover):
        return False
    tx.insert(hold)
    tx.insert(call)
    return True


def resolve_hold_steps(
    tx: Tx,
    call_id: str,
    account_id: str,
    transfers: list[TransferRow],
    *,
    debits_pending: int,
    debits_posted: int,
    last_activity_at: datetime | None,
    **call_fields: Any,
) -> None:
    tx.apply_balance(
        account_id,
        debits_pending=debits_pending,
        debits_posted=debits_posted,
        require_cover=False,
        last_activity_at=last_activity_at,
    )
    tx.insert_many(list(transfers))
    tx.update(CallRow, call_id, **call_fields)


def resolve_held_steps(
    tx: Tx,
    call_id: str,
    account_id: str,
    transfers: list[TransferRow],
    *,
    debits_pending: int,
    debits_posted: int,
    last_activity_at: datetime | None,
    **call_fields: Any,
) -> bool:
    call = tx.lock_call(call_id)
    if call is None or call.status != "held":
        return False
    resolve_hold_steps(
        tx,
        call_id,
        account_id,
        transfers,
        debits_pending=debits_pending,
        debits_posted=debits_posted,
        last_activity_at=last_activity_at,
        **call_fields,
    )
    return True

class StepwiseComposites:
    """The composite Tx steps run one primitive call at a time (memory and SQLite transactions).

    Mixed into a class that implements the rest of :class:`Tx`; PostgreSQL's transaction has its
    own one-statement versions instead."""

    def payer_view(self, number: str, call_id: str) -> PayerView:
        return payer_view_steps(cast(Tx, self), number, call_id)

    def place_hold(self, hold: TransferRow, call: CallRow, *, require_cover: bool) -> Callable[[], bool]:
        placed = place_hold_steps(cast(Tx, self), hold, call, require_cover=require_cover)
        return lambda: placed

    def resolve_hold(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> None:
        resolve_hold_steps(
            cast(Tx, self),
            call_id,
            account_id,
            transfers,
            debits_pending=debits_pending,
            debits_posted=debits_posted,
            last_activity_at=last_activity_at,
            **call_fields,
        )

    def resolve_held(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> Callable[[], bool]:
        resolved = resolve_held_steps(
            cast(Tx, self),
            call_id,
            account_id,
            transfers,
            debits_pending=debits_pending,
            debits_posted=debits_posted,
            last_activity_at=last_activity_at,
            **call_fields,
        )
        return lambda: resolved


class Store(Protocol):
    def write(self) -> AbstractContextManager[Tx]: ...

    def read(self) -> AbstractContextManager[Tx]: ...
