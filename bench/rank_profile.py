"""Where a rank's time goes: the WSGI app called in one process, timed whole and profiled by stage.

Usage (from the repository root, with the dev requirements installed):

    python -m bench.rank_profile [--requests 3000] [--auth on|off]

It builds the rank benchmark's catalog (40 titles with 5 artworks each, bench/rank_bench.py) in a
temporary folder and calls the Flask app's WSGI callable directly with the rank benchmark's request,
as gunicorn's worker would after reading the socket: no HTTP server, no network, no learner (the
learner is its own process in production). It reports:

1. ms a row, unprofiled (the median of five batches), and the SQLite write-ahead log's bytes a row,
   by the table or index each page belongs to;
2. each stage's wall time a row, timed by wrapping the stage's function with a clock (nested stages
   are inside their parent; the wrappers add well under a microsecond a call);
3. the same requests under cProfile, each stage's share of the profiled time, for comparison:
   cProfile charges a little for every Python call, so stages made of many small calls look dearer
   under it than they are.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.rank_bench import BODY
from bench.report import machine, report


def stages(app: Any) -> list[tuple[str, int, Any, Any]]:
    """The stages of a rank, in the order a request meets them: (label, depth, owner, key), where
    ``owner[key]`` (a list's item) or ``owner.key`` is the function the running code looks the stage up as."""
    from bandits import storage
    from bandits.model.policy import ServingModel
    from bandits.vw import blocks, features
    from service import metrics, runtime
    from service.views import decisions

    hooks = app.before_request_funcs[None]
    key_check = [(hooks, index) for index, hook in enumerate(hooks) if hook.__name__ == "check_request"]
    return [
        ("whole request (Flask.wsgi_app)", 0, app, "wsgi_app"),
        *(("before-request hooks: key check", 1, owner, key) for owner, key in key_check),
        ("request body: JSON and pydantic", 1, decisions, "parse"),
        ("rank use case", 1, decisions, "rank_and_log"),
        ("refresh serving state", 2, runtime.ServingState, "refresh"),
        ("decide the row", 2, decisions, "decide_row"),
        ("viewer features", 3, features, "viewer_shared"),
        ("VW predictions", 3, ServingModel, "costs"),
        ("log the decision", 2, runtime, "log_decision"),
        ("content-addressed blocks", 3, blocks, "store"),
        ("take the write lock (BEGIN IMMEDIATE)", 3, storage.SQLiteDatabase, "begin_write"),
        ("count it (metrics)", 2, metrics, "decision"),
        ("response JSON", 1, decisions, "jsonify"),
    ]


def _get(owner: Any, key: Any) -> Any:
    if isinstance(owner, list):
        return owner[key]
    return owner.__dict__[key] if isinstance(owner, type) else getattr(owner, key)


def _set(owner: Any, key: Any, value: Any) -> None:
    if isinstance(owner, list):
        owner[key] = value
    else:
        setattr(owner, key, value)


def code_key(function: Any) -> tuple[str, int, str]:
    """The key cProfile files a function's statistics under."""
    code = getattr(function, "__func__", function).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def timed_stages(app: Any, run: Any, rows: int) -> dict[str, float]:
    """Run ``run()`` with each stage's function wrapped by a clock; return each stage's ms a row."""
    totals: dict[str, float] = {}

    def clocked(label: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - started

        return wrapper

    saved = []
    for label, _, owner, key in stages(app):
        original = _get(owner, key)
        saved.append((owner, key, original))
        _set(owner, key, clocked(label, original))
    try:
        run()
    finally:
        for owner, key, original in reversed(saved):
            _set(owner, key, original)
    return {label: 1000 * total / rows for label, total in totals.items()}


def build(folder: Path, *, auth: bool) -> tuple[Any, dict[str, str]]:
    os.environ["MARQUEE_DATA_DIR"] = str(folder)
    from assets.demo import build_demo_catalog
    from bandits.storage import connect
    from service import config as settings
    from service import create_app

    config = settings.load({"LEARNER": False})
    build_demo_catalog(connect(config["DATABASE"]), data_dir=folder, count=40, artworks_per_title=5, seed=1)
    app = create_app({"LEARNER": False, "AUTH": "keys" if auth else "off"})
    headers = {"Content-Type": "application/json"}
    if auth:
        with app.app_context():
            from service import auth as keys
            from service.db import get_db

            headers[keys.HEADER] = keys.create_key(get_db(), role="client", name="bench")
    return app, headers


def call(app: Any, body: bytes, headers: dict[str, str]) -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/rank",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": headers["Content-Type"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    environ.update(
        {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items() if name != "Content-Type"}
    )
    status: list[str] = []
    chunks = app(environ, lambda s, h, exc_info=None: status.append(s))
    b"".join(chunks)
    if not status[0].startswith("200"):
        raise RuntimeError(f"rank answered {status[0]}")


def wal_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*-wal"))


def wal_frames_by_tree(db: Any, wal: Path) -> dict[str, int]:
    """Count the WAL's frames by the table or index their page belongs to (SQLite's dbstat).

    A WAL is a 32-byte header, then frames: a 24-byte header whose first four bytes are the page
    number (big-endian), and the page. Every commit writes each page it changed once, so frames per
    decision are pages changed per decision.
    """
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    owner = {int(pageno): str(name) for name, pageno in db.execute("SELECT name, pageno FROM dbstat")}
    counts: dict[str, int] = {}
    for offset in range(32, len(data) - 24 - page_size + 1, 24 + page_size):
        page = int.from_bytes(data[offset : offset + 4], "big")
        name = owner.get(page, "free or header" if page != 1 else "header (page 1)")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--auth", choices=("on", "off"), default="on")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="marquee-profile-"))
    app, headers = build(folder, auth=args.auth == "on")
    bodies = []
    for index in range(args.requests):
        body = json.loads(json.dumps(BODY))
        body["user"]["id"] = f"u-{index % 1000}"
        body["user"]["features"]["hour"] = index % 24
        bodies.append(json.dumps(body).encode())
    for body in bodies[:200]:  # models and catalog loaded, caches warm, garbage collector frozen
        call(app, body, headers)

    from bandits.storage import connect
    from service import runtime

    # WAL bytes a row: with the serving state's background checkpoints held off, the WAL only grows.
    database = Path(app.config["DATABASE"])
    db = connect(database)
    every = runtime.CHECKPOINT_SECONDS
    runtime.CHECKPOINT_SECONDS = float("inf")
    time.sleep(2 * every)  # a checkpoint already under way finishes
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sample = bodies[: min(500, len(bodies))]
    for body in sample:
        call(app, body, headers)
    wal_per_row = wal_bytes(folder) / len(sample)
    frames = wal_frames_by_tree(db, database.with_name(database.name + "-wal"))
    runtime.CHECKPOINT_SECONDS = every

    batches = []
    batch = args.requests // 5
    for start in range(0, batch * 5, batch):
        started = time.perf_counter()
        for body in bodies[start : start + batch]:
            call(app, body, headers)
        batches.append(1000 * (time.perf_counter() - started) / batch)
    ms_per_row = statistics.median(batches)

    def timed_run() -> None:
        for body in bodies:
            call(app, body, headers)

    wall = timed_stages(app, timed_run, len(bodies))

    profile = cProfile.Profile()
    profile.enable()
    for body in bodies:
        call(app, body, headers)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    cumulative = {key: cum for key, (_, _, _, cum, _) in stats.items()}
    measured = [
        (label, depth, cumulative.get(code_key(_get(owner, key)), 0.0)) for label, depth, owner, key in stages(app)
    ]
    whole = measured[0][2]
    rows: list[dict[str, Any]] = []
    for label, depth, seconds in measured:
        share = seconds / whole if whole else 0.0
        rows.append(
            {
                "stage": "  " * depth + label,
                "wall_ms_per_row": round(wall.get(label, 0.0), 3),
                "profiled_share": round(share, 3),
            }
        )
    result: dict[str, Any] = {
        "command": f"python -m bench.rank_profile --requests {args.requests} --auth {args.auth}",
        "machine": machine(platform.platform()),
        "date": time.strftime("%Y-%m-%d"),
        "ms_per_row_unprofiled": round(ms_per_row, 3),
        "ms_per_row_batches": [round(b, 3) for b in batches],
        "wal_bytes_per_row": round(wal_per_row),
        "wal_frames_per_row": {name: round(count / len(sample), 2) for name, count in frames.items()},
        "stages": rows,
    }
    print(f"\n{ms_per_row:.3f} ms a row unprofiled (batches {', '.join(f'{b:.3f}' for b in batches)}); ", end="")
    print(f"{wal_per_row:,.0f} WAL bytes a row\n")
    print("| table or index | WAL frames a row |\n|---|---|")
    for name, count in frames.items():
        print(f"| {name} | {count / len(sample):.2f} |")
    print("\n| stage | wall ms a row | share under cProfile |\n|---|---|---|")
    for row in rows:
        stage = row["stage"].replace("  ", ". ")
        print(f"| {stage} | {row['wall_ms_per_row']:.3f} | {100 * row['profiled_share']:.1f} % |")
    report("rank_profile", result)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
