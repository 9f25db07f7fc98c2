"""The ledger's logic, once, over any :class:`ledger.store.Store` (memory or SQL).

``LedgerCore`` implements :class:`ledger.api.LedgerPort` for the engine and the admin operations of
``ivr ledger``. Decisions come from ``ledger.rules`` (pure); this module only gathers the facts in a
transaction, asks the rules, and writes the immutable transfers (double entry, two phases, after
TigerBeetle: a pending hold, then a post or a void naming it; ids derived from the call id).
Bad admin input raises ``ivr.errors.InputError`` before anything is written.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from ivr.errors import InputError
from ivr.rating import CostLine, Fee, Increment, Tariff, Tax
from ledger import rules
from ledger.api import (
    BLK_CARRIER,
    BLK_FACILITY,
    BLK_NEWNUM,
    BLK_PARTY,
    Allowed,
    Authorized,
    CallFacts,
    PaymentKind,
    Refused,
    Settlement,
)
from ledger.pins import hash_pin, valid_pin, verify_pin_hash
from ledger.store import (
    AccountRow,
    BlockRecord,
    CallRow,
    DepositRow,
    NoticeRow,
    NumberRow,
    PaymentMethodRow,
    RefundRow,
    RetryableError,
    Store,
    TransferRow,
    Tx,
)

T = TypeVar("T")

HELD_CACHE_SIZE = 65536  # calls a LedgerCore remembers between authorize and settle (CallRow each)


def tariff_to_json(tariff: Tariff) -> str:
    return json.dumps(
        {
            "rate_minor_per_min": tariff.rate_minor_per_min,
            "increment": tariff.increment.value,
            "taxes": [[tax.name, tax.rate_bp] for tax in tariff.taxes],
            "fees": [[fee.name, fee.amount_minor] for fee in tariff.fees],
            "currency": tariff.currency,
        },
        sort_keys=True,
    )


def tariff_from_json(text: str) -> Tariff:
    data = json.loads(text)
    return Tariff(
        rate_minor_per_min=int(data["rate_minor_per_min"]),
        increment=Increment(data["increment"]),
        taxes=tuple(Tax(str(name), int(bp)) for name, bp in data["taxes"]),
        fees=tuple(Fee(str(name), int(amount)) for name, amount in data["fees"]),
        currency=str(data["currency"]),
    )


def lines_to_json(lines: tuple[CostLine, ...]) -> str:
    return json.dumps([[line.kind, line.name, line.amount_minor] for line in lines])


def lines_from_json(text: str) -> tuple[CostLine, ...]:
    return tuple(CostLine(str(kind), str(name), int(amount)) for kind, name, amount in json.loads(text))


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: str
    kind: str
    holder: str
    status: str
    available_minor: int
    pending_minor: int
    posted_minor: int
    expires_at: datetime | None
    numbers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExpireReport:
    notices: tuple[NoticeRow, ...]
    expired: tuple[tuple[str, int], ...]  # (account id, forfeited minor)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    at: datetime
    kind: str  # call | tax | fee | credit | deposit | refund | expiry
    description: str
    amount_minor: int  # signed: what it did to the balance
    call_id: str | None = None
    number: str | None = None
    facility_id: str | None = None
    billed_minutes: int | None = None
    billed_seconds: int | None = None
    rate_minor_per_min: int | None = None


@dataclass(frozen=True, slots=True)
class InvoiceData:
    account_id: str
    holder: str
    month: str
    opening_minor: int
    closing_minor: int
    lines: tuple[InvoiceLine, ...]


def _settlement_of(call: CallRow) -> Settlement:
    return Settlement(
        hold_id=rules.hold_transfer_id(call.call_id),
        posted_minor=call.posted_minor,
        released_minor=call.released_minor,
        credited_minor=call.credited_minor,
        billed_seconds=call.billed_seconds,
        lines=lines_from_json(call.lines_json),
        label=call.label,
    )


def _authorized_of(call: CallRow) -> Authorized:
    kind: PaymentKind = "collect" if call.kind == "collect" else "prepaid"
    return Authorized(
        hold_id=rules.hold_transfer_id(call.call_id),
        account_id=call.account_id,
        kind=kind,
        allowed_seconds=call.allowed_seconds,
        hold_minor=call.hold_minor,
        rate_minor_per_min=call.rate_minor_per_min,
    )


def _need_number(number: str) -> None:
    if not rules.is_e164(number):
        raise InputError(f"not an E.164 number: {number!r} (write +15551234567)")


@dataclass(frozen=True, slots=True)
class _SettlePlan:
    """What settling ``call`` writes, computed from the call's row alone (ACT-2, REG-2)."""

    transfers: list[TransferRow]
    resolve: dict[str, Any]  # the counters' changes and the call's new fields (Tx.resolve_hold)
    settlement: Settlement


def _settle_plan(call: CallRow, billed_seconds: int, end_reason: str, system_drop: bool, at: datetime) -> _SettlePlan:
    call_id = call.call_id
    tariff = tariff_from_json(call.tariff_json)
    amounts = rules.settle_amounts(billed_seconds, call.allowed_seconds, call.hold_minor, tariff, system_drop)
    paid = amounts.posted_minor > 0
    post = TransferRow(
        id=rules.post_transfer_id(call_id),
        debit_account_id=call.account_id,
        credit_account_id=rules.CLEARING,
        amount_minor=amounts.posted_minor,
        phase="post",
        kind="charge",
        at=at,
        pending_id=rules.hold_transfer_id(call_id),
        call_id=call_id,
        label=amounts.label,
    )
    # Distribute the posted charge from clearing to revenue, each tax and each fee (REG-2).
    lines = [
        TransferRow(
            id=rules.line_transfer_id(call_id, index),
            debit_account_id=rules.CLEARING,
            credit_account_id=rules.line_account(line),
            amount_minor=line.amount_minor,
            phase="single",
            kind="line",
            at=at,
            call_id=call_id,
            label=f"{line.kind}:{line.name}",
        )
        for index, line in enumerate(amounts.lines)
    ]
    resolve: dict[str, Any] = dict(
        debits_pending=-call.hold_minor,
        debits_posted=amounts.posted_minor,
        last_activity_at=at if paid else None,  # ACT-5: a paid call restarts the expiry clock
        status="settled",
        billed_seconds=amounts.billed_seconds,
        end_reason=end_reason,
        system_drop=system_drop,
        posted_minor=amounts.posted_minor,
        released_minor=amounts.released_minor,
        credited_minor=amounts.credited_minor,
        lines_json=lines_to_json(amounts.lines),
        label=amounts.label,
        ended_at=at,
    )
    settlement = Settlement(
        rules.hold_transfer_id(call_id),
        amounts.posted_minor,
        amounts.released_minor,
        amounts.credited_minor,
        amounts.billed_seconds,
        amounts.lines,
        amounts.label,
    )
    return _SettlePlan([post, *lines] if paid else [post], resolve, settlement)


class LedgerCore:
    """LedgerPort plus the admin operations, over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Calls this instance authorized and has not settled or voided yet (bounded: the oldest is
        # forgotten first, and a forgotten call settles by the locked path, as after a restart).
        self._held: dict[str, CallRow] = {}
        self._held_lock = threading.Lock()  # the engine authorizes from several threads

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run a write transaction again when a concurrent one inserted the same key first (or the
        store must prepare its statements again: ledger.store.RetryableError)."""
        for _ in range(5):
            try:
                return fn()
            except RetryableError:
                continue
        return fn()

    # ------------------------------------------------------------------ the engine's port

    def _snapshot(
        self,
        tx: Tx,
        facts: CallFacts,
        at: datetime,
        block_rows: Iterable[tuple[str, str | None, str]],
        account: AccountRow | None,
        lock: bool,
    ) -> rules.Snapshot:
        """The facts ``rules.decide`` needs: the blocks in force and who pays with what is left.

        ``account`` is the number's active prepaid account as read (locked when ``lock``); a collect
        payer is looked up (and locked when ``lock``) here.
        """
        blocks = rules.active_blocks(rules.BlockRow(kind, facility, action) for kind, facility, action in block_rows)
        if account is not None:
            spent = 0
            if account.spend_limit_minor is not None:
                since = rules.period_start(account.spend_period, at)
                spent = tx.posted_since(account.id, since) + account.debits_pending
            payer = rules.Payer(
                account.id,
                "prepaid",
                account.status,
                account.available_minor,
                account.spend_limit_minor,
                spent,
            )
            return rules.Snapshot(blocks, payer)
        collect = tx.collect_account_for(facts.called_number)
        if collect is None:
            payer = rules.Payer(None, "collect", "active", rules.DEFAULT_COLLECT_LIMIT_MINOR)
            return rules.Snapshot(blocks, payer)
        if lock:
            collect = tx.lock_account(collect.id) or collect
        limit = collect.credit_limit_minor if collect.credit_limit_minor is not None else 0
        used = tx.posted_since(collect.id, rules.period_start("month", at)) + collect.debits_pending
        return rules.Snapshot(blocks, rules.Payer(collect.id, "collect", collect.status, limit - used))

    def check(self, facts: CallFacts) -> Allowed | Refused:
        at = rules.utc(facts.at)
        with self.store.read() as tx:
            rows = [(r.kind, r.facility_id, r.action) for r in tx.find(BlockRecord, number=facts.called_number)]
            account = tx.account_by_number(facts.called_number, lock=False)
            decision = rules.decide(facts, self._snapshot(tx, facts, at, rows, account, lock=False))
        if isinstance(decision, Refused):
            return decision
        return Allowed(decision.account_id, decision.kind)

    def authorize(self, facts: CallFacts) -> Authorized | Refused:
        return self._retry(lambda: self._authorize(facts))

    def _authorize(self, facts: CallFacts) -> Authorized | Refused:
        at = rules.utc(facts.at)
        with self.store.write() as tx:
            view = tx.payer_view(facts.called_number, facts.call_id)  # blocks, locked account, the call
            snapshot = self._snapshot(tx, facts, at, view.blocks, view.account, lock=True)
            existing = view.call
            if view.account is None:  # a collect payer was locked just now: read the call after that lock
                existing = tx.get(CallRow, facts.call_id)
            if existing is not None:
                return _authorized_of(existing)
            decision = rules.decide(facts, snapshot)
            if isinstance(decision, Refused):
                return decision
            account_id = decision.account_id
            if account_id is None:
                account_id = f"collect:{facts.called_number}"
                tx.insert(
                    AccountRow(
                        id=account_id,
                        kind="collect",
                        holder=f"collect {facts.called_number}",
                        status="active",
                        created_at=at,
                        last_activity_at=at,
                        credit_limit_minor=rules.DEFAULT_COLLECT_LIMIT_MINOR,
                        billing_number=facts.called_number,
                    )
                )
            hold = TransferRow(
                id=rules.hold_transfer_id(facts.call_id),
                debit_account_id=account_id,
                credit_account_id=rules.CLEARING,
                amount_minor=decision.hold_minor,
                phase="pending",
                kind="hold",
                at=at,
                call_id=facts.call_id,
            )
            call = CallRow(
                call_id=facts.call_id,
                account_id=account_id,
                kind=decision.kind,
                facility_id=facts.facility_id,
                caller_id=facts.caller_id,
                called_number=facts.called_number,
                call_type=facts.call_type,
                tariff_json=tariff_to_json(facts.tariff),
                rate_minor_per_min=facts.tariff.rate_minor_per_min,
                allowed_seconds=decision.allowed_seconds,
                hold_minor=decision.hold_minor,
                status="held",
                authorized_at=at,
                hold_expires_at=rules.hold_timeout(at, decision.allowed_seconds),
            )
            # The conditional UPDATE of the pending debits, then the hold transfer and the call;
            # whether it was covered is known once the transaction has ended (store.Tx.place_hold).
            placed = tx.place_hold(hold, call, require_cover=decision.kind == "prepaid")
        if not placed():  # cannot happen under the account lock; refused rather than overdrawn
            return Refused("BLK-FUNDS", "balance changed during authorization")
        self._remember_held(call)
        return _authorized_of(call)

    def _remember_held(self, call: CallRow) -> None:
        held = self._held
        with self._held_lock:
            if len(held) >= HELD_CACHE_SIZE:
                held.pop(next(iter(held)), None)  # dicts keep insertion order: the oldest goes
            held[call.call_id] = call

    def _forget_held(self, call_id: str) -> CallRow | None:
        with self._held_lock:
            return self._held.pop(call_id, None)

    def settle(self, call_id: str, billed_seconds: int, end_reason: str, system_drop: bool, at: datetime) -> Settlement:
        return self._retry(lambda: self._settle(call_id, billed_seconds, end_reason, system_drop, at))

    def _settle(
        self, call_id: str, billed_seconds: int, end_reason: str, system_drop: bool, at: datetime
    ) -> Settlement:
        at = rules.utc(at)
        known = self._forget_held(call_id)
        if known is not None:
            # Authorized here: its row is known (the fields settle reads never change after the
            # insert), so the settle is one statement that writes only if the call is still held.
            with self.store.write() as tx:
                # Planned inside the transaction, as the locked path does: SQLite's threads wait on
                # its write lock, not on the GIL (measured: 14 % fewer cycles with 8 threads).
                plan = _settle_plan(known, billed_seconds, end_reason, system_drop, at)
                resolved = tx.resolve_held(call_id, known.account_id, plan.transfers, **plan.resolve)
            if resolved():
                return plan.settlement
            # Settled by a concurrent retry, or voided by the sweeper: the locked path answers.
        with self.store.write() as tx:
            call = self._locked_call(tx, call_id)
            if call.status == "settled":
                return _settlement_of(call)
            if call.status == "voided":
                # The sweeper released it (the engine was gone too long): the family is not charged.
                return Settlement(rules.hold_transfer_id(call_id), 0, 0, 0, 0, (), "hold voided before settle")
            plan = _settle_plan(call, billed_seconds, end_reason, system_drop, at)
            tx.resolve_hold(call_id, call.account_id, plan.transfers, **plan.resolve)
            return plan.settlement

    def _locked_call(self, tx: Tx, call_id: str) -> CallRow:
        call = tx.lock_call(call_id)  # read under the lock: a concurrent settle's result is visible
        if call is None:
            raise KeyError(f"no hold for call {call_id!r}: authorize it first")
        return call

    def void(self, call_id: str, reason: str, at: datetime) -> None:
        self._retry(lambda: self._void(call_id, reason, at))

    def _void(self, call_id: str, reason: str, at: datetime) -> None:
        at = rules.utc(at)
        self._forget_held(call_id)
        with self.store.write() as tx:
            call = tx.lock_call(call_id)
            if call is None:
                return  # never authorized (refused, or failed before acceptance): nothing held
            if call.status != "held":
                return
            void = TransferRow(
                id=rules.void_transfer_id(call_id),
                debit_account_id=call.account_id,
                credit_account_id=rules.CLEARING,
                amount_minor=call.hold_minor,
                phase="void",
                kind="release",
                at=at,
                pending_id=rules.hold_transfer_id(call_id),
                call_id=call_id,
                label=reason,
            )
            tx.resolve_hold(
                call_id,
                call.account_id,
                [void],
                debits_pending=-call.hold_minor,
                debits_posted=0,
                last_activity_at=None,
                status="voided",
                released_minor=call.hold_minor,
                end_reason=reason,
                ended_at=at,
            )

    def block(self, number: str, scope_facility_id: str | None, reason: str, who: str, at: datetime) -> None:
        self.add_block(number, scope_facility_id, BLK_PARTY, reason, who, at)

    def sweep(self, now: datetime) -> list[str]:
        """Void every hold past its timeout (a crashed engine's reservations release themselves)."""
        now = rules.utc(now)
        with self.store.read() as tx:
            expired = tx.expired_holds(now)
        for call_id in expired:
            self.void(call_id, "hold timeout (ACT-3 sweeper)", now)
        return expired

    # ------------------------------------------------------------------ blocks and restrictions

    def add_block(
        self,
        number: str,
        facility_id: str | None,
        kind: str,
        reason: str,
        who: str,
        at: datetime,
        detail: str = "",
    ) -> bool:
        """Put a block or restriction in force; False when it already was (no new row)."""
        if kind not in rules.BLOCK_KINDS:
            raise InputError(f"unknown block kind {kind!r}")
        return self._change_block("block", number, facility_id, kind, reason, who, at, detail)

    def lift_block(
        self,
        number: str,
        facility_id: str | None,
        kind: str,
        reason: str,
        who: str,
        at: datetime,
        detail: str = "",
    ) -> bool:
        """Lift a block (a new audited row). False when nothing of that kind and scope was in force."""
        return self._change_block("lift", number, facility_id, kind, reason, who, at, detail)

    def _change_block(
        self, action: str, number: str, facility_id: str | None, kind: str, reason: str, who: str, at: datetime,
        detail: str,
    ) -> bool:
        """Blocks are never edited: each change is a new row, written only when it changes what is in force."""
        _need_number(number)
        at = rules.utc(at)
        with self.store.write() as tx:
            current = rules.active_blocks(
                rules.BlockRow(r.kind, r.facility_id, r.action) for r in tx.find(BlockRecord, number=number)
            )
            if ((kind, facility_id) in current) == (action == "block"):
                return False  # already blocked / nothing to lift
            tx.insert(BlockRecord(None, number, facility_id, kind, action, reason, who, at, detail))
            return True

    def restrict(self, number: str, kind: str, reason: str, who: str, at: datetime) -> bool:
        """BLK-CARRIER or BLK-NEWNUM on a number (all facilities)."""
        if kind not in (BLK_CARRIER, BLK_NEWNUM):
            raise InputError(f"restrictions are {BLK_CARRIER} or {BLK_NEWNUM}, not {kind!r}")
        return self.add_block(number, None, kind, reason, who, at)

    def lift(self, number: str, kind: str, who: str, at: datetime, number_since: date | None = None) -> bool:
        """Lift a restriction. BLK-NEWNUM needs the date the holder got the number (FAQ)."""
        if kind == BLK_NEWNUM:
            if number_since is None:
                raise InputError("lifting a new-number restriction needs the date the holder got the number")
            if number_since > rules.utc(at).date():
                raise InputError(f"the number cannot have been received in the future ({number_since})")
            return self.lift_block(number, None, kind, "holder confirmed the date", who, at, number_since.isoformat())
        if kind != BLK_CARRIER:
            raise InputError(f"restrictions are {BLK_CARRIER} or {BLK_NEWNUM}, not {kind!r}")
        return self.lift_block(number, None, kind, "carrier lifted the collect restriction", who, at)

    def blocks_in_force(self, number: str) -> frozenset[tuple[str, str | None]]:
        with self.store.read() as tx:
            return rules.active_blocks(
                rules.BlockRow(r.kind, r.facility_id, r.action) for r in tx.find(BlockRecord, number=number)
            )

    def facility_block(self, number: str, facility_id: str, reason: str, who: str, at: datetime) -> bool:
        return self.add_block(number, facility_id, BLK_FACILITY, reason, who, at)

    # ------------------------------------------------------------------ accounts

    def open_account(
        self,
        holder: str,
        numbers: list[str],
        at: datetime,
        *,
        state: str | None = None,
        pin: str | None = None,
        number_type: str = "landline",
        spend_limit_minor: int | None = None,
        spend_period: str = "month",
    ) -> str:
        if not holder.strip():
            raise InputError("the holder's name is empty")
        if not numbers:
            raise InputError("an account needs at least one number (ACT-1)")
        for number in numbers:
            _need_number(number)
        if len(set(numbers)) != len(numbers):
            raise InputError("the same number is given twice")
        if state is not None and not (len(state) == 2 and state.isascii() and state.isalpha()):
            raise InputError(f"state must be a two-letter code like AK, not {state!r}")
        if pin is not None and not valid_pin(pin):
            raise InputError("PIN must be 4 to 12 digits")
        if number_type not in rules.NUMBER_TYPES:
            raise InputError(f"number type must be one of {', '.join(rules.NUMBER_TYPES)}")
        if spend_period not in rules.SPEND_PERIODS:
            raise InputError(f"spending period must be one of {', '.join(rules.SPEND_PERIODS)}")
        at = rules.utc(at)
        account_id = f"acct-{uuid.uuid4().hex[:12]}"
        pin_hash = hash_pin(pin) if pin is not None else None
        with self.store.write() as tx:
            for number in numbers:
                owner = tx.account_for_number(number)
                if owner is not None:
                    raise InputError(f"{number} is already on active account {owner}")
            tx.insert(
                AccountRow(
                    id=account_id,
                    kind="prepaid",
                    holder=holder.strip(),
                    status="active",
                    created_at=at,
                    last_activity_at=at,
                    pin_hash=pin_hash,
                    state=state.upper() if state else None,
                    spend_limit_minor=spend_limit_minor,
                    spend_period=spend_period,
                )
            )
            for number in numbers:
                tx.insert(NumberRow(None, number, account_id, number_type, True, at))
        return account_id

    def _active_prepaid(self, tx: Tx, account_id: str, *, lock: bool = False) -> AccountRow:
        account = tx.lock_account(account_id) if lock else tx.get(AccountRow, account_id)
        if account is None or account.kind != "prepaid":
            raise InputError(f"unknown account {account_id!r}")
        if account.status != "active":
            raise InputError(f"account {account_id} is {account.status}")
        return account

    def add_number(self, account_id: str, number: str, at: datetime, number_type: str = "landline") -> None:
        _need_number(number)
        if number_type not in rules.NUMBER_TYPES:
            raise InputError(f"number type must be one of {', '.join(rules.NUMBER_TYPES)}")
        at = rules.utc(at)
        with self.store.write() as tx:
            self._active_prepaid(tx, account_id, lock=True)
            owner = tx.account_for_number(number)
            if owner == account_id:
                raise InputError(f"{number} is already on account {account_id}")
            if owner is not None:
                raise InputError(f"{number} is already on active account {owner}")
            tx.insert(NumberRow(None, number, account_id, number_type, True, at))

    def set_spend_limit(self, account_id: str, amount_minor: int | None, period: str, at: datetime) -> None:
        if period not in rules.SPEND_PERIODS:
            raise InputError(f"spending period must be one of {', '.join(rules.SPEND_PERIODS)}")
        with self.store.write() as tx:
            self._active_prepaid(tx, account_id, lock=True)
            tx.update(AccountRow, account_id, spend_limit_minor=amount_minor, spend_period=period)

    def set_collect_limit(self, number: str, amount_minor: int, at: datetime) -> str:
        """Customer service sets a collect number's monthly credit limit (creating its account)."""
        _need_number(number)
        at = rules.utc(at)
        with self.store.write() as tx:
            collect = tx.collect_account_for(number)
            if collect is None:
                account_id = f"collect:{number}"
                tx.insert(
                    AccountRow(
                        id=account_id,
                        kind="collect",
                        holder=f"collect {number}",
                        status="active",
                        created_at=at,
                        last_activity_at=at,
                        credit_limit_minor=amount_minor,
                        billing_number=number,
                    )
                )
                return account_id
            tx.lock_account(collect.id)
            tx.update(AccountRow, collect.id, credit_limit_minor=amount_minor)
            return collect.id

    def verify_account_pin(self, account_id: str, pin: str) -> bool:
        with self.store.read() as tx:
            account = tx.get(AccountRow, account_id)
        return account is not None and account.pin_hash is not None and verify_pin_hash(pin, account.pin_hash)

    def deposit(
        self, account_id: str, amount_minor: int, method: str, at: datetime, card_last4: str | None = None
    ) -> DepositRow:
        if amount_minor <= 0:
            raise InputError("a deposit must be a positive amount")
        if method not in rules.DEPOSIT_METHODS:
            raise InputError(f"method must be one of {', '.join(rules.DEPOSIT_METHODS)}")
        if card_last4 is not None and not (method == "card" and len(card_last4) == 4 and card_last4.isdigit()):
            raise InputError("--card-last4 takes 4 digits and only with --method card")
        at = rules.utc(at)
        transfer_id = f"deposit/{uuid.uuid4().hex}"
        with self.store.write() as tx:
            self._active_prepaid(tx, account_id, lock=True)
            label = f"card ending {card_last4}" if card_last4 else method
            methods = [m for m in tx.find(PaymentMethodRow, account_id=account_id) if m.label == label]
            if methods:
                method_id = methods[0].id
            else:
                tx.insert(PaymentMethodRow(None, account_id, method, label, at))
                method_id = tx.find(PaymentMethodRow, account_id=account_id, label=label)[0].id
            tx.apply_balance(account_id, credits_posted=amount_minor, require_cover=False)
            tx.insert(
                TransferRow(
                    transfer_id,
                    rules.funding_account(method),
                    account_id,
                    amount_minor,
                    "single",
                    "deposit",
                    at,
                )
            )
            row = DepositRow(None, account_id, amount_minor, method, method_id, transfer_id, at)
            tx.insert(row)
            tx.update(AccountRow, account_id, last_activity_at=at)  # ACT-5: a deposit restarts the clock
            return row

    def balance(self, account_id: str) -> Balance:
        with self.store.read() as tx:
            account = tx.get(AccountRow, account_id)
            if account is None or account.kind == "system":
                raise InputError(f"unknown account {account_id!r}")
            numbers = tuple(n.number for n in tx.find(NumberRow, account_id=account_id) if n.active)
        expiry = rules.expires_at(account.last_activity_at, account.state) if account.kind == "prepaid" else None
        return Balance(
            account.id,
            account.kind,
            account.holder,
            account.status,
            account.available_minor,
            account.debits_pending,
            account.posted_balance_minor,
            expiry,
            numbers or ((account.billing_number,) if account.billing_number else ()),
        )

    def calls_owner(self, number: str) -> str | None:
        """The active prepaid account a number belongs to (ACT-1), if any."""
        with self.store.read() as tx:
            return tx.account_for_number(number)

    def calls(self, account_id: str) -> list[CallRow]:
        with self.store.read() as tx:
            if tx.get(AccountRow, account_id) is None:
                raise InputError(f"unknown account {account_id!r}")
            return tx.find(CallRow, account_id=account_id)

    def refund(self, account_id: str, amount_minor: int | None, at: datetime) -> RefundRow:
        """ACT-5: all or part of the available balance, before expiry, to the last card or by check."""
        at = rules.utc(at)
        with self.store.write() as tx:
            account = self._active_prepaid(tx, account_id, lock=True)
            expiry = rules.expires_at(account.last_activity_at, account.state)
            if expiry is not None and at >= expiry:
                raise InputError(f"account {account_id} expired on {expiry.date()}: no refund after expiry")
            available = account.available_minor
            amount = available if amount_minor is None else amount_minor
            if amount <= 0:
                raise InputError(f"nothing to refund: available balance is {rules.format_minor(available)}")
            if amount > available:
                raise InputError(
                    f"refund {rules.format_minor(amount)} is above the available balance "
                    f"{rules.format_minor(available)}"
                )
            deposits = tx.find(DepositRow, account_id=account_id)
            last = max(deposits, key=lambda d: (d.at, d.id or 0)) if deposits else None
            method = rules.refund_method(last.method if last else None)
            if method == "card" and last is not None:
                pm = tx.get(PaymentMethodRow, last.payment_method_id) if last.payment_method_id else None
                destination, status = (pm.label if pm else "card"), "issued-to-card"
            else:
                destination, status = f"check mailed to {account.holder}", "check-requested"
            transfer_id = f"refund/{uuid.uuid4().hex}"
            ok = tx.apply_balance(account_id, debits_posted=amount, require_cover=True)
            if not ok:
                raise InputError("the balance changed; try again")
            tx.insert(
                TransferRow(transfer_id, account_id, rules.refund_account(method), amount, "single", "refund", at)
            )
            row = RefundRow(None, account_id, amount, method, destination, status, transfer_id, at)
            tx.insert(row)
            return row

    def expire(self, now: datetime) -> ExpireReport:
        """Produce the 30- and 7-day notices and expire accounts past their date (ACT-5)."""
        now = rules.utc(now)
        notices: list[NoticeRow] = []
        expired: list[tuple[str, int]] = []
        with self.store.read() as tx:
            accounts = [a for a in tx.find(AccountRow, kind="prepaid") if a.status == "active"]
        for account in accounts:
            with self.store.write() as tx:
                current = tx.lock_account(account.id)
                if current is None or current.status != "active":
                    continue
                expiry = rules.expires_at(current.last_activity_at, current.state)
                if expiry is None:
                    continue
                if now >= expiry:
                    if current.debits_pending:
                        continue  # a call is in progress on it; the next run expires it
                    forfeited = current.posted_balance_minor
                    if forfeited > 0:
                        tx.apply_balance(current.id, debits_posted=forfeited, require_cover=True)
                        tx.insert(
                            TransferRow(
                                f"expiry/{current.id}",
                                current.id,
                                rules.FORFEITED,
                                forfeited,
                                "single",
                                "expiry",
                                now,
                                label=f"expired {expiry.date()}",
                            )
                        )
                    tx.update(AccountRow, current.id, status="expired")
                    for number in tx.find(NumberRow, account_id=current.id):
                        if number.active:
                            tx.update(NumberRow, number.id or 0, active=False)
                    notice = NoticeRow(None, current.id, 0, expiry, now)
                    tx.insert(notice)
                    notices.append(notice)
                    expired.append((current.id, forfeited))
                    continue
                sent = [n.days_before for n in tx.find(NoticeRow, account_id=current.id) if n.expires_at == expiry]
                for days in rules.notices_due(expiry, now, sent):
                    notice = NoticeRow(None, current.id, days, expiry, now)
                    tx.insert(notice)
                    notices.append(notice)
        return ExpireReport(tuple(notices), tuple(expired))

    # ------------------------------------------------------------------ invoices and exports

    def invoice_data(self, account_id: str, month: str) -> InvoiceData:
        """ACT-6: every call, tax, fee, credit, deposit, refund and expiry of the month, signed."""
        try:
            start, end = rules.month_bounds(month)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        with self.store.read() as tx:
            account = tx.get(AccountRow, account_id)
            if account is None or account.kind == "system":
                raise InputError(f"unknown account {account_id!r}")
            transfers = [
                *tx.find(TransferRow, debit_account_id=account_id),
                *tx.find(TransferRow, credit_account_id=account_id),
            ]
            calls = tx.find(CallRow, account_id=account_id)
            refunds = {r.transfer_id: r for r in tx.find(RefundRow, account_id=account_id)}
            deposits = {d.transfer_id: d for d in tx.find(DepositRow, account_id=account_id)}
            methods = {m.id: m for m in tx.find(PaymentMethodRow, account_id=account_id)}

        def effect(t: TransferRow) -> int:
            if t.phase not in ("single", "post"):
                return 0
            return t.amount_minor if t.credit_account_id == account_id else -t.amount_minor

        opening = sum(effect(t) for t in transfers if t.at < start)
        closing = sum(effect(t) for t in transfers if t.at < end)
        lines: list[InvoiceLine] = []
        for t in transfers:
            if not start <= t.at < end:
                continue
            if t.kind == "deposit":
                dep = deposits.get(t.id)
                pm = methods.get(dep.payment_method_id) if dep and dep.payment_method_id else None
                lines.append(InvoiceLine(t.at, "deposit", f"deposit ({pm.label if pm else 'deposit'})", effect(t)))
            elif t.kind == "refund":
                ref = refunds.get(t.id)
                desc = f"refund to {ref.destination} ({ref.status})" if ref else "refund"
                lines.append(InvoiceLine(t.at, "refund", desc, effect(t)))
            elif t.kind == "expiry":
                lines.append(InvoiceLine(t.at, "expiry", f"balance forfeited: {t.label}", effect(t)))
        for call in calls:
            if call.status != "settled" or call.ended_at is None or not start <= call.ended_at < end:
                continue
            tariff = tariff_from_json(call.tariff_json)
            minutes = -(-call.billed_seconds // 60)
            common: dict[str, Any] = {
                "call_id": call.call_id,
                "number": call.called_number,
                "facility_id": call.facility_id,
            }
            for line in lines_from_json(call.lines_json):
                if line.kind == "call":
                    lines.append(
                        InvoiceLine(
                            call.ended_at,
                            "call",
                            f"call to {call.called_number} from {call.facility_id}",
                            -line.amount_minor,
                            billed_minutes=minutes,
                            billed_seconds=call.billed_seconds,
                            rate_minor_per_min=tariff.rate_minor_per_min,
                            **common,
                        )
                    )
                else:
                    lines.append(InvoiceLine(call.ended_at, line.kind, line.name, -line.amount_minor, **common))
            if call.billed_seconds == 0:
                lines.append(
                    InvoiceLine(
                        call.ended_at,
                        "call",
                        f"call to {call.called_number} from {call.facility_id}",
                        0,
                        billed_minutes=0,
                        billed_seconds=0,
                        rate_minor_per_min=tariff.rate_minor_per_min,
                        **common,
                    )
                )
            if call.credited_minor:
                lines.append(InvoiceLine(call.ended_at, "credit", call.label, call.credited_minor, **common))
        lines.sort(key=lambda line: (line.at, line.call_id or "", _KIND_ORDER.get(line.kind, 9)))
        return InvoiceData(account_id, account.holder, month, opening, closing, tuple(lines))

    def collect_export(self, month: str) -> list[dict[str, str | int]]:
        """Collect charges of the month for the billing clearinghouse, one row per call."""
        try:
            start, end = rules.month_bounds(month)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        rows: list[dict[str, str | int]] = []
        with self.store.read() as tx:
            calls = [c for c in tx.find(CallRow, kind="collect") if c.status == "settled"]
        for call in sorted(calls, key=lambda c: (c.ended_at or start, c.call_id)):
            if call.ended_at is None or not start <= call.ended_at < end or call.posted_minor == 0:
                continue
            lines = lines_from_json(call.lines_json)
            rows.append(
                {
                    "billing_number": call.called_number,
                    "call_id": call.call_id,
                    "date": call.authorized_at.isoformat(),
                    "facility_id": call.facility_id,
                    "billed_seconds": call.billed_seconds,
                    "billed_minutes": -(-call.billed_seconds // 60),
                    "rate_minor_per_min": call.rate_minor_per_min,
                    "usage_minor": sum(x.amount_minor for x in lines if x.kind == "call"),
                    "fees_minor": sum(x.amount_minor for x in lines if x.kind == "fee"),
                    "taxes_minor": sum(x.amount_minor for x in lines if x.kind == "tax"),
                    "total_minor": call.posted_minor,
                }
            )
        return rows

    # ------------------------------------------------------------------ invariants (tests, audits)

    def check_invariants(self) -> list[str]:
        """Every broken invariant, in words; empty when the book is sound."""
        problems: list[str] = []
        with self.store.read() as tx:
            accounts = {a.id: a for a in tx.find(AccountRow)}
            transfers = tx.find(TransferRow)
            calls = tx.find(CallRow)
        by_id = {t.id: t for t in transfers}
        resolutions: dict[str, list[TransferRow]] = {}
        for t in transfers:
            if t.phase in ("post", "void"):
                assert t.pending_id is not None
                resolutions.setdefault(t.pending_id, []).append(t)
        counters: dict[str, list[int]] = {}  # id -> [debits_pending, debits_posted, credits_posted]
        for t in transfers:
            debit = counters.setdefault(t.debit_account_id, [0, 0, 0])
            credit = counters.setdefault(t.credit_account_id, [0, 0, 0])
            if t.phase == "pending":
                if t.id not in resolutions:
                    debit[0] += t.amount_minor
            elif t.phase in ("single", "post"):
                debit[1] += t.amount_minor
                credit[2] += t.amount_minor
        total = sum(c[2] - c[1] for c in counters.values())
        if total != 0:
            problems.append(f"posted transfers do not balance: {total}")
        clearing = counters.get(rules.CLEARING, [0, 0, 0])
        if clearing[2] - clearing[1] != 0:
            problems.append(f"clearing account holds {clearing[2] - clearing[1]} after posting")
        for account in accounts.values():
            c = counters.get(account.id, [0, 0, 0])
            if (account.debits_pending, account.debits_posted, account.credits_posted) != tuple(c):
                problems.append(f"{account.id}: counters disagree with the journal")
            if account.kind == "prepaid" and account.available_minor < 0:
                problems.append(f"{account.id}: available below zero ({account.available_minor})")
        for pending_id, res in resolutions.items():
            if len(res) != 1:
                problems.append(f"hold {pending_id} resolved {len(res)} times")
            if pending_id not in by_id:
                problems.append(f"{pending_id}: resolution of an unknown hold")
            elif any(r.amount_minor > by_id[pending_id].amount_minor for r in res):
                problems.append(f"{pending_id}: posted more than held")
        for call in calls:
            hold = rules.hold_transfer_id(call.call_id)
            res = resolutions.get(hold, [])
            expected = {"held": [], "settled": ["post"], "voided": ["void"]}[call.status]
            if [r.phase for r in res] != expected:
                problems.append(f"call {call.call_id}: status {call.status} but resolutions {[r.phase for r in res]}")
            posts = [r for r in res if r.phase == "post"]
            if posts and posts[0].amount_minor != call.posted_minor:
                problems.append(f"call {call.call_id}: posted {posts[0].amount_minor} != recorded {call.posted_minor}")
        return problems


_KIND_ORDER = {"deposit": 0, "call": 1, "fee": 2, "tax": 3, "credit": 4, "refund": 5, "expiry": 6}


def parse_when(text: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 time; naive times are UTC."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"not a date: {text!r} (write YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
