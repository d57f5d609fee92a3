"""Rank benchmark: gunicorn (2 workers) under wrk and an open-loop generator, against the VW calls alone.

Usage (from the repository root, with the dev requirements installed and Debian's wrk):

    python -m bench.rank_bench [--seconds 30] [--rate 500] [--workers 2] [--fixed-runs 1] [--auth keys|off]
                               [--database-url postgresql://... [--nodes 2]]

It builds a catalog of 40 titles with 5 artworks each in a temporary folder, then measures:

1. the VW-only ceiling: the same row decisions (1 title prediction over 40 titles, then 10
   artwork predictions over 5 artworks) in one process, without HTTP, logging or JSON; the
   ceiling of N workers is N times that (one core each);
2. the service's throughput: wrk, closed loop, 8 connections, rows of 10 slots;
3. the service's latency at a fixed rate: open-loop Poisson arrivals at ``--rate`` rows/s
   (bench/loadgen.py; latency from each request's scheduled time), p50/p95/p99 and errors, and the
   generator's own lag in sending and its own CPU (it shares the machine's cores with the service);
   ``--fixed-runs`` repeats it (each run's p99 is reported);
4. the HTTP stack alone: gunicorn with the same workers serving ``bench/empty_app.py`` (Flask parses
   the same request and answers a row of the same size, without deciding or logging) under the same
   wrk load. Its throughput bounds any Flask service on this machine; with the VW calls added on
   top, ``stack_bound_rows_per_second`` is what a service doing nothing else could reach;
5. the same without Flask: gunicorn serving a plain WSGI callable (``bench.empty_app.bare``) that
   reads and parses the request and writes the same row; ``bare_bound_rows_per_second`` bounds any
   Python service under gunicorn that makes these VW calls, whatever its framework;
6. the log writes alone (``log_only``, SQLite): one decided row logged again and again, as a rank
   logs it, on a copy of the file the service wrote, in one process. Added to the Flask stack and the
   VW calls, ``durable_bound_rows_per_second`` bounds a Flask service that makes these VW calls and
   commits this log before it answers, as Marquee promises, and does nothing else.

The learner runs throughout, as in production: every row is learned after the reward window. API
keys are checked (``--auth keys``, the default: a client key made with ``flask keys create``, sent in
X-API-Key by wrk and the generator); ``--auth off`` measures as the figures before 2026-12-05 did.
Serving CPU a row is the workers' CPU (cores) over the closed loop's rows a second. WAL bytes a row
are what every writer (workers and learner) added to the write-ahead log while a phase ran
(``bench.walmeter``), over its rows.

With ``--database-url`` the service keeps its tables on that PostgreSQL server (in a new schema,
dropped afterwards) instead of a SQLite file, and WAL bytes are the server's own (``pg_current_wal_lsn``:
everything the server wrote meanwhile). ``--nodes 2`` starts two gunicorn deployments on it (each
with ``--workers`` workers and its own data folder, one learner between them) and splits the load
evenly: wrk on each node at once, and the fixed rate half to each.

Results print as a Markdown table and are saved under bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bandits.postgres import is_url, redacted
from bench.report import cpu_idle, machine, report
from bench.walmeter import PostgresWalMeter, WalMeter, fresh_schema

BODY: dict[str, Any] = {
    "user": {
        "id": "u-1",
        "features": {
            "country": "BR",
            "device": "tv",
            "hour": 21,
            "history_genres": ["comedy", "heist"],
            "recent_searches": ["space"],
        },
    },
    "slots": 10,
}


SETTLE_SECONDS = 3.0


def served(data_dir: Path, database_url: str = "") -> tuple[dict[str, Any], Any]:
    """The settings of a service on ``data_dir`` and a serving state loaded from its store, in this process."""
    os.environ["MARQUEE_DATA_DIR"] = str(data_dir)
    os.environ["MARQUEE_DATABASE_URL"] = database_url
    from bandits.storage import connect
    from service import config as settings
    from service.runtime import ServingState

    config = settings.load({"LEARNER": False})
    state = ServingState()
    state.refresh(connect(config["DATABASE"]), settings.typed(config))
    return config, state


def vw_only(data_dir: Path, *, seconds: float, database_url: str = "") -> dict[str, float]:
    """Rows per second of the VW calls alone, on this process's one core."""
    from bandits.model.exploration import epsilon_greedy, epsilon_greedy_row
    from bandits.vw import features

    _, state = served(data_dir, database_url)
    snapshot = state.snapshot
    assert snapshot is not None
    ids = list(snapshot.order)
    lines = [snapshot.titles[t].action_line for t in ids]
    rng = np.random.default_rng(0)
    titles, artwork = state.models["titles"], state.models["artwork"]
    rows = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        shared = features.viewer_shared(user_id="u-1", features=BODY["user"]["features"])
        picks = epsilon_greedy_row(titles.costs(shared, lines), 10, 0.1, rng)
        for pick in picks:
            title = snapshot.titles[ids[pick.index]]
            epsilon_greedy(
                artwork.costs(features.artwork_shared(shared, lines[pick.index]), title.artwork_lines), 0.1, rng
            )
        rows += 1
    elapsed = time.perf_counter() - started
    return {"rows_per_second": rows / elapsed, "ms_per_row": 1000 * elapsed / rows}


def log_only(data_dir: Path, *, seconds: float) -> dict[str, float]:
    """Milliseconds a row of logging decided rows as a rank does, on a copy of the service's SQLite file.

    One row is decided for the benchmark's request with the serving models, then logged again and
    again under new event ids by ``bandits.log.eventlog.log_decision`` (the event, its impressions and
    its reward windows in one committed transaction, the durability a rank's answer waits for), on a
    connection opened as a serving one is. The copy is thrown away: the service never sees these rows.
    """
    import sqlite3

    from bandits.decide.row import decide_row
    from bandits.log.eventlog import log_decision, new_event_id
    from bandits.storage import checkpoint, connect

    config, state = served(data_dir)
    assert state.snapshot is not None
    decision = decide_row(
        snapshot=state.snapshot,
        titles_model=state.models["titles"],
        artwork_model=state.models["artwork"],
        titles_exploration=state.policies["titles"].explorer(0),
        artwork_exploration=state.policies["artwork"].explorer(0),
        user_id=BODY["user"]["id"],
        user_features=BODY["user"]["features"],
        slots=BODY["slots"],
        candidates=None,
        exclude=[],
        rng=np.random.default_rng(0),
    )
    with tempfile.TemporaryDirectory(prefix="marquee-log-only-") as folder:
        copy = str(Path(folder) / "copy.db")
        with (
            contextlib.closing(sqlite3.connect(config["DATABASE"])) as source,
            contextlib.closing(sqlite3.connect(copy)) as target,
        ):
            source.backup(target)
        db = connect(copy, autocheckpoint=False, synchronous=config["SQLITE_SYNCHRONOUS"])
        rows = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            log_decision(
                db,
                database=copy,
                event_id=new_event_id(),
                decision=decision,
                user_id=BODY["user"]["id"],
                context=BODY["user"]["features"],
                deferred=False,
                policies=state.policies,
            )
            rows += 1
            if rows % 1000 == 0:  # as the serving processes' background thread does, off the timed path
                pause = time.perf_counter()
                checkpoint(db)
                started += time.perf_counter() - pause
        elapsed = time.perf_counter() - started
        db.close()
    return {"rows_per_second": rows / elapsed, "ms_per_row": 1000 * elapsed / rows}


def wrk(port: int, *, seconds: float, connections: int = 8, headers: dict[str, str] | None = None) -> dict[str, Any]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    extra = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in (headers or {}).items())
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n{extra}'
        f"wrk.body = '{json.dumps(BODY)}'\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "-s",
            str(script),
            "--latency",
            f"http://127.0.0.1:{port}/v1/rank",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rows_per_second": rate,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
        "p99_ms": _wrk_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
    }


def _wrk_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def fixed_rate(
    ports: list[int], *, seconds: float, rate: int, headers: dict[str, str], seed: int = 0
) -> dict[str, float]:
    """Open-loop Poisson load at ``rate`` rows/s in all (bench.loadgen), split evenly over the nodes' ``ports``."""
    from bench.loadgen import LoadResult, run

    def make(index: int) -> tuple[str, str, dict]:
        body = json.loads(json.dumps(BODY))
        body["user"]["id"] = f"u-{index % 1000}"
        body["user"]["features"]["hour"] = index % 24
        return "POST", "/v1/rank", body

    results: list[LoadResult] = []

    def one(node: int, port: int) -> None:
        share = rate / len(ports)
        results.append(
            run("127.0.0.1", port, rate=share, seconds=seconds, make=make, headers=headers, seed=seed + node)
        )

    threads = [threading.Thread(target=one, args=(node, port)) for node, port in enumerate(ports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = LoadResult(elapsed=max(result.elapsed for result in results))
    for result in results:
        merged.latencies += result.latencies
        merged.send_lags += result.send_lags
        merged.failures += result.failures
        merged.cpu_seconds += result.cpu_seconds
        for status, count in result.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
    return merged.summary()


def closed_loop(ports: list[int], *, seconds: float, headers: dict[str, str]) -> dict[str, Any]:
    """wrk on every node at once, 8 connections in all; rows a second summed, the worst node's p99."""
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda port=port: results.append(
                wrk(port, seconds=seconds, connections=8 // len(ports), headers=headers)
            )
        )
        for port in ports
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "rows_per_second": sum(result["rows_per_second"] for result in results),
        "non_2xx": sum(result["non_2xx"] for result in results),
        "socket_errors": "; ".join(result["socket_errors"] for result in results),
        "p99_ms": max(result["p99_ms"] for result in results),
    }


def empty_stack(workers: int, *, seconds: float, app: str = "bench.empty_app:app") -> dict[str, Any]:
    """Throughput of gunicorn answering the same request with a canned row (``app`` in bench/empty_app.py)."""
    from tests.gunicorn_harness import ROOT, free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}", app],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn with {app} did not start") from None
                time.sleep(0.1)
        return wrk(port, seconds=seconds)
    finally:
        process.terminate()
        process.wait(timeout=20)


def cpu_seconds(pids: list[int]) -> float:
    """Return the CPU time (user + system) consumed so far by the given processes."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_for_learner(service, timeout: float = 300) -> float:
    """Wait until the learner has learned every due event; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        _, health = service.request("GET", "/healthz")
        if all(p["learner_lag_seconds"] == 0 for p in health["policies"].values()):
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError("the learner did not catch up")


def measured(services: list[Any], label: str, action):
    """Run ``action`` and return its result plus the CPU seconds each part of the service used, and the
    write-ahead log bytes every writer (workers and learner) wrote meanwhile (``bench.walmeter``)."""
    learners = [pid for service in services for pid in service.learners()]
    workers = [pid for service in services for pid in service.processes() if pid not in learners]
    this = resource.getrusage(resource.RUSAGE_SELF)
    before = (cpu_seconds(workers), cpu_seconds(learners), this.ru_utime + this.ru_stime, time.monotonic())
    database = services[0].database
    with PostgresWalMeter(database) if is_url(database) else WalMeter(Path(database)) as wal:
        result = action()
    this = resource.getrusage(resource.RUSAGE_SELF)
    after = (cpu_seconds(workers), cpu_seconds(learners), this.ru_utime + this.ru_stime, time.monotonic())
    wall = after[3] - before[3]
    result[f"{label}_cpu_cores_serving"] = round((after[0] - before[0]) / wall, 2)
    result[f"{label}_cpu_cores_learner"] = round((after[1] - before[1]) / wall, 2)
    result[f"{label}_cpu_cores_generator"] = round((after[2] - before[2]) / wall, 2)
    result[f"{label}_wal_bytes_per_second"] = round(wal.bytes / wall)
    return result


def started_service(
    *, workers: int, seconds: float, prefix: str, auth: str = "off", database_url: str = "", nodes: int = 1
) -> tuple[Path, list[Any], dict[str, float], dict[str, str]]:
    """Build the benchmark catalog in a new folder, measure the VW-only ceiling, start gunicorn and warm it up.

    Returns the folder, the running ``tests.gunicorn_harness.Service`` of each node, the ceiling
    (``vw_only``) and the headers every request sends (a client key when ``auth`` is ``keys``).
    """
    from tests.gunicorn_harness import Service

    work = Path(tempfile.mkdtemp(prefix=prefix))
    services = [
        Service(work / f"node{node}" / "data", workers=workers, env={"MARQUEE_AUTH": auth}, database_url=database_url)
        for node in range(nodes)
    ]
    first = services[0]
    first.flask("demo-catalog", "--titles", "40", "--artworks", "5", "--seed", "1")
    headers = {}
    if auth == "keys":
        headers["X-API-Key"] = first.flask("keys", "create", "--name", "bench", "--role", "client").strip()
    ceiling = vw_only(first.data_dir, seconds=min(10.0, seconds), database_url=database_url)
    for service in services:
        service.start()
        for _ in range(20):  # every worker loads the catalog and the models on its first request
            service.request("POST", "/v1/rank", BODY, headers=headers)
    # The first request also starts the learner process, whose imports take about half a second of CPU
    # at normal priority: measure the steady state, after it.
    time.sleep(SETTLE_SECONDS)
    return work, services, ceiling, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fixed-runs", type=int, default=1, help="how many times to run the fixed-rate phase")
    parser.add_argument("--auth", choices=("keys", "off"), default="keys", help="check API keys (keys) or not")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server to keep the tables on (a new schema)")
    parser.add_argument("--nodes", type=int, default=1, help="gunicorn deployments on the PostgreSQL server")
    args = parser.parse_args()
    if args.nodes != 1 and not args.database_url:
        parser.error("--nodes needs --database-url: nodes share a PostgreSQL server, not a SQLite file")
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install {tool})")
    with contextlib.ExitStack() as stack_of_exits:
        database_url = stack_of_exits.enter_context(fresh_schema(args.database_url)) if args.database_url else ""
        work, services, ceiling, headers = started_service(
            workers=args.workers,
            seconds=args.seconds,
            prefix="marquee-bench-",
            auth=args.auth,
            database_url=database_url,
            nodes=args.nodes,
        )
        ports = [service.port for service in services]
        try:
            runs = []
            for run in range(args.fixed_runs):
                runs.append(
                    measured(
                        services,
                        "fixed",
                        lambda run=run: fixed_rate(
                            ports, seconds=args.seconds, rate=args.rate, headers=headers, seed=run
                        ),
                    )
                )
                wait_for_learner(services[0])
            fixed = runs[0]
            closed = measured(services, "closed", lambda: closed_loop(ports, seconds=args.seconds, headers=headers))
            catch_up = wait_for_learner(services[0])
        finally:
            for service in services:
                service.stop()
        # The same rows' log writes alone, on a copy of the file the service logged to (SQLite only).
        logged = None if args.database_url else log_only(services[0].data_dir, seconds=min(10.0, args.seconds))
    stack = empty_stack(args.workers, seconds=args.seconds)
    bare = empty_stack(args.workers, seconds=args.seconds, app="bench.empty_app:bare")
    ceiling_n = ceiling["rows_per_second"] * args.workers

    def bound(stack_rows_per_second: float, added_ms: float = 0.0) -> float:
        # CPU per row of a service that only adds the VW calls (and ``added_ms`` more) to a stack: the
        # stack's share (workers / its throughput, with the workers saturating their cores) plus theirs.
        return args.workers / (args.workers / stack_rows_per_second + (ceiling["ms_per_row"] + added_ms) / 1000)

    durable = (
        {}
        if logged is None
        else {
            "log_only_ms_per_row": round(logged["ms_per_row"], 3),
            "durable_bound_rows_per_second": round(bound(stack["rows_per_second"], logged["ms_per_row"]), 1),
            "service_share_of_durable_bound": round(
                closed["rows_per_second"] / bound(stack["rows_per_second"], logged["ms_per_row"]), 3
            ),
        }
    )

    result = {
        "command": f"python -m bench.rank_bench --seconds {args.seconds:g} --rate {args.rate} --workers {args.workers}"
        f" --fixed-runs {args.fixed_runs} --auth {args.auth}"
        + (f" --database-url {redacted(args.database_url)} --nodes {args.nodes}" if args.database_url else ""),
        "store": f"PostgreSQL, {args.nodes} node(s) of {args.workers} workers" if args.database_url else "SQLite file",
        "machine": machine(platform.platform(), cpu_idle()),
        "date": time.strftime("%Y-%m-%d"),
        "vw_only_rows_per_second_one_core": round(ceiling["rows_per_second"], 1),
        "vw_only_ms_per_row": round(ceiling["ms_per_row"], 3),
        "vw_only_ceiling_rows_per_second": round(ceiling_n, 1),
        "service_rows_per_second": round(closed["rows_per_second"], 1),
        "service_share_of_ceiling": round(closed["rows_per_second"] / ceiling_n, 3),
        "service_share_of_stack_bound": round(closed["rows_per_second"] / bound(stack["rows_per_second"]), 3),
        "serving_cpu_ms_per_row": round(1000 * closed["closed_cpu_cores_serving"] / closed["rows_per_second"], 3),
        "wal_bytes_per_row_closed_loop": round(closed["closed_wal_bytes_per_second"] / closed["rows_per_second"]),
        "wal_bytes_per_row_fixed_rate": round(fixed["fixed_wal_bytes_per_second"] / fixed["achieved_per_second"]),
        "closed_loop_p99_ms": closed["p99_ms"],
        "closed_loop_non_2xx": closed["non_2xx"],
        "closed_loop_socket_errors": closed["socket_errors"],
        "fixed_rate": args.rate,
        "fixed_rate_achieved": fixed["achieved_per_second"],
        "fixed_rate_p50_ms": fixed["p50_ms"],
        "fixed_rate_p95_ms": fixed["p95_ms"],
        "fixed_rate_p99_ms": fixed["p99_ms"],
        "fixed_rate_max_ms": fixed["max_ms"],
        "fixed_rate_errors": fixed["non_2xx"] + fixed["failures"],
        "fixed_rate_generator_send_lag_p99_ms": fixed["generator_send_lag_p99_ms"],
        "fixed_rate_p99_ms_each_run": [run["p99_ms"] for run in runs],
        "fixed_rate_generator_lag_p99_ms_each_run": [run["generator_send_lag_p99_ms"] for run in runs],
        "fixed_rate_generator_cores_each_run": [run["generator_cores"] for run in runs],
        "fixed_rate_generator_ms_per_request": fixed["generator_ms_per_request"],
        "fixed_rate_achieved_each_run": [run["achieved_per_second"] for run in runs],
        **{k: v for k, v in {**fixed, **closed}.items() if "_cpu_" in k},
        "learner_catch_up_after_closed_loop_s": round(catch_up, 1),
        "empty_stack_rows_per_second": round(stack["rows_per_second"], 1),
        "empty_stack_share_of_ceiling": round(stack["rows_per_second"] / ceiling_n, 3),
        "stack_bound_rows_per_second": round(bound(stack["rows_per_second"]), 1),
        "stack_bound_share_of_ceiling": round(bound(stack["rows_per_second"]) / ceiling_n, 3),
        "bare_stack_rows_per_second": round(bare["rows_per_second"], 1),
        "bare_bound_rows_per_second": round(bound(bare["rows_per_second"]), 1),
        "bare_bound_share_of_ceiling": round(bound(bare["rows_per_second"]) / ceiling_n, 3),
        **durable,
    }
    report("rank", result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
