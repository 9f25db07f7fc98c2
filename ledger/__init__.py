"""Prepaid ledger: accounts, two-phase holds, blocks, refunds, invoices (DOMAIN.md ACT, BLK, REG).

Map of the package (DESIGN.md section 6):

- ``ledger.api``      the engine's interface: ``CallFacts``, ``Allowed``, ``Authorized``, ``Refused``,
                      ``Settlement``, ``LedgerPort`` (check, authorize, settle, void, block). No SQL.
- ``ledger.rules``    pure rules: BLK-* decision, allowed time and hold (LIM-1, via ``ivr.rating``),
                      settlement split and ACT-4 credit, spending periods, expiry per state, notices.
- ``ledger.core``     ``LedgerCore``: the logic once, over a store (the port plus admin operations).
- ``ledger.memory``   ``InMemoryLedger`` (tests, simulations). ``ledger.service``: ``LedgerService(url)``.
- ``ledger.repo``     the only SQL (SQLite or PostgreSQL); ``ledger.models`` + ``ledger/migrations``.
- ``ledger.ratecaps`` REG-1 caps as data: ``rate_cap(facility_type, population, at)``.
- ``ledger.invoice``  ACT-6 invoices (text, csv, json, pdf). ``ledger.cli``: ``ivr ledger ...``.
"""
