"""Ledger throughput: authorize+settle cycles per second, 1 and 8 concurrent writers, SQLite and
PostgreSQL, next to pgbench's built-in TPC-B-like script on the same PostgreSQL (issue 5, item 8).

    python bench/ledger.py [--seconds 5] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Writers are processes (the GIL would otherwise be the limit), each on its own prepaid account
(different families calling at once); one extra row puts 8 writers on a single hot account, and
one runs 8 threads in one process on SQLite (how the engine calls it).
A cycle is what one accepted call costs the ledger: authorize (re-check every BLK rule, pending
hold) then settle (post, release, distribute taxes) = 2 transactions, 3 round trips on PostgreSQL.
pgbench's TPC-B-like transaction is
5 statements in 1 transaction; the ratio compares the two on the same server.
Prints one table. Cleans up its scratch schema, database and files.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.testing import T0, TAXED, facts

DEFAULT_PG = os.environ.get("IVR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _number(index: int) -> str:
    return f"+1555100{index:04d}"


def _worker(url: str, number: str, tag: str, seconds: float, ready: Any, start: Any, out: Any) -> None:
    from ledger.service import LedgerService

    service = LedgerService(url, auto_migrate=False)
    ready.release()
    start.wait()
    deadline = time.perf_counter() + seconds
    cycles = 0
    while time.perf_counter() < deadline:
        call_id = f"{tag}-{cycles}"
        service.authorize(facts(call_id, number, tariff=TAXED, at=T0))
        service.settle(call_id, 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
        cycles += 1
    out.put(cycles)
    service.close()


def run_ledger(url: str, writers: int, seconds: float, hot: bool) -> float:
    from ledger.service import LedgerService

    service = LedgerService(url)  # migrates
    accounts = 1 if hot else writers
    for index in range(accounts):
        account = service.open_account(f"bench {index}", [_number(index)], T0)
        service.deposit(account, 10**11, "card", T0)
    service.close()
    ctx = mp.get_context("fork")
    ready, start, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    tag = uuid.uuid4().hex[:6]
    procs = [
        ctx.Process(
            target=_worker,
            args=(url, _number(0 if hot else i), f"{tag}-{i}", seconds, ready, start, out),
        )
        for i in range(writers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    started = time.perf_counter()
    start.set()
    total = sum(int(out.get()) for _ in procs)
    elapsed = max(time.perf_counter() - started, seconds)
    for proc in procs:
        proc.join()
    return total / elapsed


def run_ledger_threads(url: str, writers: int, seconds: float) -> float:
    """Writers as threads of one process: how the engine calls the ledger (background threads)."""
    import threading

    from ledger.service import LedgerService

    service = LedgerService(url)
    for index in range(writers):
        account = service.open_account(f"bench {index}", [_number(index)], T0)
        service.deposit(account, 10**11, "card", T0)
    counts = [0] * writers
    start = threading.Barrier(writers + 1)
    deadline = [0.0]

    def writer(index: int) -> None:
        start.wait()
        cycles = 0
        while time.perf_counter() < deadline[0]:
            call_id = f"t{index}-{cycles}"
            service.authorize(facts(call_id, _number(index), tariff=TAXED, at=T0))
            service.settle(call_id, 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
            cycles += 1
        counts[index] = cycles

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    start.wait()
    for thread in threads:
        thread.join()
    service.close()
    return sum(counts) / seconds


def _pg_admin(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(url, isolation_level="AUTOCOMMIT")


def pg_schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def run_pgbench(url: str, clients: int, seconds: float) -> float | None:
    """TPS of pgbench's built-in TPC-B-like script on a scratch database of the same server."""
    if shutil.which("pgbench") is None:
        return None
    from sqlalchemy import text

    parts = urlsplit(url.replace("+psycopg", ""))
    database = f"ivr_pgbench_{uuid.uuid4().hex[:6]}"
    admin = _pg_admin(url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        conn_args = [
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
        ]
        subprocess.run(["pgbench", "-i", "-q", "-s", "8", *conn_args, database], check=True, capture_output=True)
        threads = min(clients, os.cpu_count() or 1)
        done = subprocess.run(
            ["pgbench", "-c", str(clients), "-j", str(threads), "-T", str(int(seconds)), "-n", *conn_args, database],
            check=True,
            capture_output=True,
            text=True,
        )
        match = re.search(r"tps = ([0-9.]+)", done.stdout)
        return float(match.group(1)) if match else None
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{database}"'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL ('' to skip)")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float | None]] = []
    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    try:
        for writers in (1, 8):
            url = f"sqlite:///{tmp / f'bench-{writers}.db'}"
            rows.append(("sqlite", f"{writers}", run_ledger(url, writers, args.seconds, hot=False), None))
        url = f"sqlite:///{tmp / 'bench-threads.db'}"
        rows.append(("sqlite", "8 threads", run_ledger_threads(url, 8, args.seconds), None))
        if args.pg:
            from sqlalchemy import text

            admin = _pg_admin(args.pg)
            for writers, hot in ((1, False), (8, False), (8, True)):
                schema = f"ivr_bench_{uuid.uuid4().hex[:8]}"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                try:
                    rate = run_ledger(pg_schema_url(args.pg, schema), writers, args.seconds, hot)
                finally:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                tps = None if hot else run_pgbench(args.pg, writers, args.seconds)
                rows.append(("postgresql", f"{writers}{' (one account)' if hot else ''}", rate, tps))
            admin.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ledger authorize+settle cycles per second ({args.seconds:.0f} s per run, {os.cpu_count()} CPUs)")
    print(f"{'backend':<11} {'writers':<17} {'cycles/s':>9} {'pgbench tps':>12} {'ratio':>7}")
    for backend, label, rate, tps in rows:
        tps_text = f"{tps:12.0f}" if tps else f"{'-':>12}"
        ratio = f"{rate / tps:7.2f}" if tps else f"{'-':>7}"
        print(f"{backend:<11} {label:<17} {rate:9.0f} {tps_text} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
