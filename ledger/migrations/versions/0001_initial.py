"""Initial ledger and roster schema: accounts, numbers, calls, transfers, blocks, payments, notices,
rate caps (REG-1, seeded from ledger.ratecaps as of this revision), callers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from ledger.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Money = sa.BigInteger


def _d(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# REG-1 rows as of this revision (frozen here: later changes to the data come as new revisions).
RATE_CAPS = [
    ("FCC 21-60", "prison", 0, None, 14, _d(2021, 10, 26)),
    ("FCC 21-60", "jail", 1000, None, 16, _d(2021, 10, 26)),
    ("FCC 21-60", "jail", 0, 999, 21, _d(2021, 10, 26)),
    ("FCC 24-75", "prison", 0, None, 6, _d(2025, 1, 1)),
    ("FCC 24-75", "jail", 1000, None, 6, _d(2025, 1, 1)),
    ("FCC 24-75", "jail", 350, 999, 7, _d(2025, 4, 1)),
    ("FCC 24-75", "jail", 100, 349, 9, _d(2025, 4, 1)),
    ("FCC 24-75", "jail", 0, 99, 12, _d(2025, 4, 1)),
]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_activity_at", UTCDateTime(), nullable=False),
        sa.Column("pin_hash", sa.String(200), nullable=True),
        sa.Column("state", sa.String(8), nullable=True),
        sa.Column("spend_limit_minor", Money, nullable=True),
        sa.Column("spend_period", sa.String(8), nullable=False),
        sa.Column("credit_limit_minor", Money, nullable=True),
        sa.Column("billing_number", sa.String(16), nullable=True, unique=True),
        sa.Column("debits_pending", Money, nullable=False),
        sa.Column("debits_posted", Money, nullable=False),
        sa.Column("credits_pending", Money, nullable=False),
        sa.Column("credits_posted", Money, nullable=False),
    )
    op.create_table(
        "phone_numbers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("number_type", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_phone_numbers_account_id", "phone_numbers", ["account_id"])
    op.create_index(
        "uq_phone_numbers_active",
        "phone_numbers",
        ["number"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(128), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("facility_id", sa.String(64), nullable=False),
        sa.Column("caller_id", sa.String(64), nullable=True),
        sa.Column("called_number", sa.String(16), nullable=False),
        sa.Column("call_type", sa.String(32), nullable=False),
        sa.Column("tariff_json", sa.Text, nullable=False),
        sa.Column("rate_minor_per_min", sa.Integer, nullable=False),
        sa.Column("allowed_seconds", sa.Integer, nullable=False),
        sa.Column("hold_minor", Money, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("authorized_at", UTCDateTime(), nullable=False),
        sa.Column("hold_expires_at", UTCDateTime(), nullable=False),
        sa.Column("billed_seconds", sa.Integer, nullable=False),
        sa.Column("end_reason", sa.String(64), nullable=False),
        sa.Column("system_drop", sa.Boolean, nullable=False),
        sa.Column("posted_minor", Money, nullable=False),
        sa.Column("released_minor", Money, nullable=False),
        sa.Column("credited_minor", Money, nullable=False),
        sa.Column("lines_json", sa.Text, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_calls_kind", "calls", ["kind"])
    op.create_index("ix_calls_account_ended", "calls", ["account_id", "ended_at"])
    op.create_index("ix_calls_status_expiry", "calls", ["status", "hold_expires_at"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("debit_account_id", sa.String(64), nullable=False),
        sa.Column("credit_account_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", Money, nullable=False),
        sa.Column("phase", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        # A hold is posted or voided at most once, enforced by the database itself (ACT-3).
        sa.Column("pending_id", sa.String(160), nullable=True, unique=True),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name="ck_transfers_amount_nonnegative"),
    )
    op.create_index("ix_transfers_debit_account_id", "transfers", ["debit_account_id"])
    op.create_index("ix_transfers_credit_account_id", "transfers", ["credit_account_id"])
    op.create_index("ix_transfers_call_id", "transfers", ["call_id"])
    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("facility_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("who", sa.String(100), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
    )
    op.create_index("ix_blocks_number", "blocks", ["number"])
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_payment_methods_account_id", "payment_methods", ["account_id"])
    op.create_table(
        "deposits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", Money, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("payment_method_id", sa.Integer, nullable=True),
        sa.Column("transfer_id", sa.String(160), nullable=False, unique=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_deposits_account_id", "deposits", ["account_id"])
    op.create_table(
        "refunds",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", Money, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("transfer_id", sa.String(160), nullable=False, unique=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_refunds_account_id", "refunds", ["account_id"])
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("days_before", sa.Integer, nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account_id", "days_before", "expires_at", name="uq_notices_once"),
    )
    caps = op.create_table(
        "rate_caps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_ref", sa.String(64), nullable=False),
        sa.Column("facility_type", sa.String(16), nullable=False),
        sa.Column("population_min", sa.Integer, nullable=False),
        sa.Column("population_max", sa.Integer, nullable=True),
        sa.Column("rate_minor_per_min", sa.Integer, nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
    )
    op.bulk_insert(
        caps,
        [
            {
                "order_ref": ref,
                "facility_type": kind,
                "population_min": lo,
                "population_max": hi,
                "rate_minor_per_min": rate,
                "effective_from": since,
            }
            for ref, kind, lo, hi, rate, since in RATE_CAPS
        ],
    )
    op.create_table(
        "callers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("facility_id", sa.String(64), nullable=False),
        sa.Column("pin_hash", sa.String(200), nullable=False),
        sa.Column("pin_tag", sa.String(8), nullable=False),
        sa.Column("name_clip_path", sa.String(400), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_callers_facility_id", "callers", ["facility_id"])
    op.create_index("ix_callers_facility_tag", "callers", ["facility_id", "pin_tag"])


def downgrade() -> None:
    for table in (
        "callers",
        "rate_caps",
        "notices",
        "refunds",
        "deposits",
        "payment_methods",
        "blocks",
        "transfers",
        "calls",
        "phone_numbers",
        "accounts",
    ):
        op.drop_table(table)
