"""SQLAlchemy 2.x tables of the ledger and the caller roster (one database; DESIGN.md section 6).

The schema itself is created by the Alembic migrations in ``ledger/migrations``; these models are
what the code reads and writes, and a test checks that the migrated database matches them.
Column names equal the field names of the rows in ``ledger.store``. Times are stored as naive UTC
and come back timezone-aware (``UTCDateTime``); money is integer minor units.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in Python, naive UTC in the database (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; pass UTC-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite raw text (should not happen through the type)
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()
Money = BigInteger


class Base(DeclarativeBase):
    metadata = metadata


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # prepaid | collect | system
    holder: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pin_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str | None] = mapped_column(String(8), nullable=True)
    spend_limit_minor: Mapped[int | None] = mapped_column(Money, nullable=True)
    spend_period: Mapped[str] = mapped_column(String(8), default="month")
    credit_limit_minor: Mapped[int | None] = mapped_column(Money, nullable=True)
    billing_number: Mapped[str | None] = mapped_column(String(16), nullable=True, unique=True)
    debits_pending: Mapped[int] = mapped_column(Money, default=0)
    debits_posted: Mapped[int] = mapped_column(Money, default=0)
    credits_pending: Mapped[int] = mapped_column(Money, default=0)
    credits_posted: Mapped[int] = mapped_column(Money, default=0)


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    number_type: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A number belongs to at most one active account (ACT-1): a partial unique index.
    __table_args__ = (
        Index(
            "uq_phone_numbers_active",
            "number",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )


class Call(Base):
    __tablename__ = "calls"
    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), index=True)
    facility_id: Mapped[str] = mapped_column(String(64))
    caller_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    called_number: Mapped[str] = mapped_column(String(16))
    call_type: Mapped[str] = mapped_column(String(32))
    tariff_json: Mapped[str] = mapped_column(Text)
    rate_minor_per_min: Mapped[int] = mapped_column(Integer)
    allowed_seconds: Mapped[int] = mapped_column(Integer)
    hold_minor: Mapped[int] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    authorized_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hold_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    billed_seconds: Mapped[int] = mapped_column(Integer, default=0)
    end_reason: Mapped[str] = mapped_column(String(64), default="")
    system_drop: Mapped[bool] = mapped_column(Boolean, default=False)
    posted_minor: Mapped[int] = mapped_column(Money, default=0)
    released_minor: Mapped[int] = mapped_column(Money, default=0)
    credited_minor: Mapped[int] = mapped_column(Money, default=0)
    lines_json: Mapped[str] = mapped_column(Text, default="[]")
    label: Mapped[str] = mapped_column(String(200), default="")
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    __table_args__ = (
        Index("ix_calls_account_ended", "account_id", "ended_at"),
        Index("ix_calls_status_expiry", "status", "hold_expires_at"),
    )


class Transfer(Base):
    """Immutable double-entry transfers; ids derive from the call id and phase (ACT-3)."""

    __tablename__ = "transfers"
    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    debit_account_id: Mapped[str] = mapped_column(String(64), index=True)
    credit_account_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_minor: Mapped[int] = mapped_column(Money)
    phase: Mapped[str] = mapped_column(String(8))  # single | pending | post | void
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    pending_id: Mapped[str | None] = mapped_column(String(160), nullable=True, unique=True)
    call_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    __table_args__ = (CheckConstraint("amount_minor >= 0", name="ck_transfers_amount_nonnegative"),)


class Block(Base):
    """Blocks and restrictions (BLK-*): lifting is a new row, so the history is the audit trail."""

    __tablename__ = "blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(16), index=True)
    facility_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(200))
    who: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[str] = mapped_column(String(200), default="")


class PaymentMethod(Base):
    __tablename__ = "payment_methods"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    method: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(100))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Deposit(Base):
    __tablename__ = "deposits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_minor: Mapped[int] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(16))
    payment_method_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_id: Mapped[str] = mapped_column(String(160), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Refund(Base):
    __tablename__ = "refunds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_minor: Mapped[int] = mapped_column(Money)
    method: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(32))
    transfer_id: Mapped[str] = mapped_column(String(160), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notice(Base):
    __tablename__ = "notices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    days_before: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    __table_args__ = (UniqueConstraint("account_id", "days_before", "expires_at", name="uq_notices_once"),)


class RateCap(Base):
    """REG-1 per-minute caps by facility type and size, with effective dates (mirrors ledger.ratecaps)."""

    __tablename__ = "rate_caps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_ref: Mapped[str] = mapped_column(String(64))
    facility_type: Mapped[str] = mapped_column(String(16))
    population_min: Mapped[int] = mapped_column(Integer)
    population_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_minor_per_min: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())


class Caller(Base):
    """The roster of callers (ivr.roster): PINs stored hashed (scrypt, per-row salt)."""

    __tablename__ = "callers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    facility_id: Mapped[str] = mapped_column(String(64), index=True)
    pin_hash: Mapped[str] = mapped_column(String(200))
    pin_tag: Mapped[str] = mapped_column(String(8))
    name_clip_path: Mapped[str | None] = mapped_column(String(400), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    __table_args__ = (Index("ix_callers_facility_tag", "facility_id", "pin_tag"),)
