"""Count the write-ahead log frames every process writes to a SQLite database, while they write.

(``PostgresWalMeter`` does the same for a PostgreSQL server, from its WAL position.)

SQLite keeps the WAL's state in the ``-shm`` file that every connection maps: its header (the
``WalIndexHdr`` of SQLite's wal.c, in the machine's byte order) holds ``mxFrame``, the number of
valid frames in the WAL, and the two salts, which change each time a writer starts the WAL over
after a checkpoint. Sampling the header often enough that the WAL cannot restart twice between two
samples counts every frame: frames added since the last sample, or, after a restart (new salts),
all the frames now there. A frame is one page plus its 24-byte header.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

HEADER = struct.Struct("=IIIBBHII8xII")  # iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame,
# nPage, aFrameCksum (skipped), aSalt[2]


def read_header(shm: Path) -> tuple[int, int, tuple[int, int]]:
    """Return (page size, mxFrame, salts) from a ``-shm`` file's first header copy."""
    with open(shm, "rb") as file:
        data = file.read(HEADER.size)
    if len(data) < HEADER.size:
        return 0, 0, (0, 0)
    _, _, _, _, _, page, frames, _, salt1, salt2 = HEADER.unpack(data)
    return (65536 if page == 1 else page), frames, (salt1, salt2)


class FrameCounter:
    """Counts the frames written between successive reads of a database's WAL header (``sample``)."""

    def __init__(self, database: Path) -> None:
        self.shm = database.with_name(database.name + "-shm")
        self.frames = 0
        self.page_size = 0

    def sample(self, last: tuple[int, tuple[int, int]] | None) -> tuple[int, tuple[int, int]]:
        """Read the header once, add the frames written since ``last``; return what was read."""
        page, frames, salts = read_header(self.shm)
        self.page_size = page or self.page_size
        if last is not None:
            self.frames += frames if salts != last[1] else max(0, frames - last[0])
        return frames, salts

    @property
    def bytes(self) -> int:
        """The WAL bytes written: frames times (page + 24-byte frame header)."""
        return self.frames * (self.page_size + 24)


class WalMeter:
    """Count the WAL frames written to a database while the block runs; ``frames`` and ``bytes`` say how many.

    The sampling runs in a process of its own (``python -m bench.walmeter``). Reading the ``-shm`` file
    means opening and closing it, and on POSIX closing any descriptor of a file drops every lock the
    process holds on it, the shared locks of its own SQLite connections included: SQLite would then
    take a live wal-index for abandoned and rebuild it under the writers (SQLite's "How To Corrupt an
    SQLite Database File", 2.2). A benchmark process that also holds connections to the database
    must never read the file itself.
    """

    def __init__(self, database: Path, *, every: float = 0.005) -> None:
        self.database = database
        self.every = every
        self.frames = 0
        self.page_size = 0

    def __enter__(self) -> WalMeter:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bench.walmeter", str(self.database), str(self.every)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._child.stdout is not None
        if self._child.stdout.readline().strip() != "ready":  # the baseline is read before the block starts
            raise RuntimeError("the WAL meter did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.close()
        frames, page_size = self._child.stdout.read().split()
        self._child.wait(timeout=10)
        self.frames, self.page_size = int(frames), int(page_size)

    @property
    def bytes(self) -> int:
        """The WAL bytes written: frames times (page + 24-byte frame header)."""
        return self.frames * (self.page_size + 24)


class PostgresWalMeter:
    """The WAL bytes a PostgreSQL server wrote between ``__enter__`` and ``__exit__`` (every database's)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bytes = 0
        self._start = ""

    def _position(self) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def __enter__(self) -> PostgresWalMeter:
        self._start = self._position()
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        end = self._position()
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [end, self._start]).fetchone()
        assert row is not None
        self.bytes = int(row[0])


@contextlib.contextmanager
def fresh_schema(url: str, *, prefix: str = "marquee_bench") -> Iterator[str]:
    """Make a new schema on the server ``url`` names; yield a URL whose connections use only it; drop it afterwards.

    Before dropping it, this process's pools on the yielded URL are closed (``bandits.postgres.close_pools``):
    whatever was left open on it (an app's serving state, its requests' pool) lets go of the schema.
    """
    import uuid
    from urllib.parse import quote

    import psycopg

    from bandits.postgres import close_pools

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        scoped = f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}"
        try:
            yield scoped
        finally:
            close_pools(scoped)
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _main() -> None:
    """``python -m bench.walmeter DATABASE EVERY``: say ``ready``, count until stdin closes, print frames, page size."""
    counter, every = FrameCounter(Path(sys.argv[1])), float(sys.argv[2])
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    last = counter.sample(None)
    print("ready", flush=True)
    while not stop.wait(every):
        last = counter.sample(last)
    counter.sample(last)
    print(counter.frames, counter.page_size, flush=True)


if __name__ == "__main__":
    _main()
