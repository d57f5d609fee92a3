"""How many decisions a second a PostgreSQL server can log, with pgbench: Marquee's inserts, and TPC-B beside them.

Usage (from the repository root; Debian's pgbench, from the postgresql-client package):

    python -m bench.pg_write_bench --database-url postgresql://postgres@127.0.0.1:5432/test [--seconds 15]
                                   [--clients 1 2 4 8]

In a new schema (dropped afterwards) made with Marquee's own tables (``bandits.storage.connect``), pgbench
runs one transaction per decision, the statements ``bandits.log.eventlog.record`` makes for a row of 10
slots: the event (``RETURNING seq``), its 10 impressions, its 2 reward windows, with rows of the sizes
the rank benchmark's decisions have. Three variants, each at every ``--clients``:

* ``write lock``: as Marquee commits today, the deployment's write lock (``bandits.postgres.WRITE_LOCK``)
  taken first, so one decision commits at a time whatever the nodes;
* ``no lock``: the same inserts without it: what the server itself allows when decisions commit
  side by side (group commit);
* ``tpcb``: pgbench's built-in TPC-B-like transaction (scale 10), the figure usually quoted.

Each row gives transactions (decisions) a second, mean latency, and WAL bytes a transaction
(``pg_current_wal_lsn`` before and after). Results print as a Markdown table and are saved under
bench/results/.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bandits.postgres import WRITE_LOCK, redacted
from bandits.storage import connect, write_transaction
from bench.report import machine, report
from bench.walmeter import PostgresWalMeter, fresh_schema

# Sizes of the rank benchmark's decisions (40 candidate titles, 10 slots, 5 artworks each).
DECISION = """\\set u random(1, 1000000)
BEGIN;
{lock}INSERT INTO events (id, created_at, user_id, context, candidates, title_shared, title_block, model_versions,
    deferred, activated_at, kind, modes)
  VALUES (md5(random()::text), extract(epoch from clock_timestamp()), 'u-' || :u, repeat('c', 160), repeat('t', 280),
    repeat('s', 240), 'block', '{{"artwork": 7, "titles": 7}}', 0, extract(epoch from clock_timestamp()), NULL, NULL)
  RETURNING seq \\gset
INSERT INTO impressions (event_seq, position, title_id, title_index, title_prob, title_explored, artwork_id,
    artwork_ids, artwork_block, artwork_index, artwork_prob, artwork_explored, offered, title_greedy, artwork_greedy,
    shared, slot_id)
  SELECT :seq, g, 't0' || g, g, 0.91, 0, 't0' || g || '-a1', repeat('a', 60), 'block', 1, 0.82, 0, NULL,
    't0' || g, 't0' || g || '-a1', NULL, NULL FROM generate_series(0, 9) AS g;
INSERT INTO pending (event_seq, policy, due_at)
  VALUES (:seq, 'titles', extract(epoch from clock_timestamp()) + 10),
         (:seq, 'artwork', extract(epoch from clock_timestamp()) + 10);
COMMIT;
"""


def pgbench(url: str, schema_url: str, args: list[str], *, seconds: float) -> dict[str, float]:
    """Run pgbench against the schema ``schema_url`` uses; return its TPS and mean latency (ms)."""
    env = {**os.environ, "PGOPTIONS": _options(schema_url)}
    out = subprocess.run(
        ["pgbench", "-n", "-T", str(int(seconds)), *args, _plain(url)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return {"tps": tps, "latency_ms": latency}


def _plain(url: str) -> str:
    """The URL without its query (pgbench takes the schema from PGOPTIONS)."""
    return url.split("?", 1)[0]


def _options(schema_url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(schema_url).query).get("options", [""])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server (a new schema is made there)")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not installed (Debian: apt-get install postgresql-client)")
    result: dict[str, Any] = {
        "command": f"python -m bench.pg_write_bench --database-url {redacted(args.database_url)} "
        f"--seconds {args.seconds:g} --clients {' '.join(map(str, args.clients))}",
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections")
        }
    result["server"] = ", ".join(f"{name} {value}" for name, value in settings.items())
    with fresh_schema(args.database_url) as url:
        db = connect(url)
        with write_transaction(db):
            db.execute("INSERT INTO feature_blocks (key, lines) VALUES ('block', '[]')")
        scope = db.scope  # type: ignore[attr-defined]
        db.close()
        scripts = Path(tempfile.mkdtemp(prefix="marquee-pgbench-"))
        for name, lock in (("write lock", f"SELECT pg_advisory_xact_lock({scope}, {WRITE_LOCK});\n"), ("no lock", "")):
            script = scripts / f"{name.replace(' ', '-')}.sql"
            script.write_text(DECISION.format(lock=lock))
            for clients in args.clients:
                with PostgresWalMeter(url) as wal:
                    found = pgbench(
                        args.database_url,
                        url,
                        ["-c", str(clients), "-j", str(min(clients, 2)), "-f", str(script)],
                        seconds=args.seconds,
                    )
                transactions = found["tps"] * args.seconds
                result[f"decisions, {name}, {clients} clients"] = (
                    f"{found['tps']:,.0f} a second, {found['latency_ms']:.2f} ms mean, "
                    f"{wal.bytes / transactions:,.0f} WAL bytes each"
                )
        shutil.rmtree(scripts, ignore_errors=True)
        env = {**os.environ, "PGOPTIONS": _options(url)}
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "10", _plain(args.database_url)], env=env, check=True, capture_output=True
        )
        for clients in args.clients:
            with PostgresWalMeter(url) as wal:
                found = pgbench(
                    args.database_url, url, ["-c", str(clients), "-j", str(min(clients, 2))], seconds=args.seconds
                )
            result[f"tpcb (scale 10), {clients} clients"] = (
                f"{found['tps']:,.0f} a second, {found['latency_ms']:.2f} ms mean, "
                f"{wal.bytes / (found['tps'] * args.seconds):,.0f} WAL bytes each"
            )
    report("pg_write", result)


if __name__ == "__main__":
    main()
