"""Prepaid ledger: accounts, two-phase holds, blocks, refunds, invoices (DOMAIN.md ACT, BLK, REG)."""
