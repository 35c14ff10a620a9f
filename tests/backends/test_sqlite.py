"""SQLite-only behaviour: layout behind the API, group commit, several writers, crash durability."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.api import BackendError, BackendUnavailableError, ConflictError, Item, Put
from backends.sqlite import CHECKPOINT_EVERY_COMMITS, SCHEMA_VERSION, SqliteBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "store.db")
    try:
        yield backend
    finally:
        await backend.close()


class TestLayout:
    async def test_schema_and_pragmas(self, db: SqliteBackend) -> None:
        """The file is in WAL mode with the versioned single-table schema."""
        conn = sqlite3.connect(db.path)
        try:
            assert SCHEMA_VERSION == conn.execute("PRAGMA user_version").fetchone()[0]
            assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
            cols = [r[1] for r in conn.execute("PRAGMA table_info(items)")]
            assert ["pk", "sk", "version", "value", "due_ms"] == cols
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(items)")}
            assert "items_due" in indexes
        finally:
            conn.close()

    async def test_rows_behind_the_api(self, db: SqliteBackend) -> None:
        """An item is one row holding the raw value bytes, its version and its due time."""
        await db.write([Put("inv#1", "meta", b"\x00\xff", due_ms=7)])
        await db.write([Put("inv#1", "meta", b"\x01", expect=1, due_ms=None)])
        conn = sqlite3.connect(db.path)
        try:
            rows = conn.execute("SELECT pk, sk, version, value, due_ms FROM items").fetchall()
        finally:
            conn.close()
        assert [("inv#1", "meta", 2, b"\x01", None)] == rows

    async def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        """Data outlives the backend object; reopening finds it."""
        first = SqliteBackend(tmp_path / "d.db")
        await first.write([Put("p", "a", b"x", due_ms=3)])
        await first.close()
        second = SqliteBackend(tmp_path / "d.db")
        try:
            assert Item("p", "a", b"x", 1, 3) == await second.get("p", "a")
        finally:
            await second.close()

    async def test_creates_parent_directories(self, tmp_path: Path) -> None:
        """The database's parent directory is created when missing."""
        backend = SqliteBackend(tmp_path / "a" / "b" / "store.db")
        await backend.close()
        assert (tmp_path / "a" / "b" / "store.db").exists()

    async def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A file written by a newer schema version is not touched."""
        path = tmp_path / "new.db"
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(BackendError, match="newer"):
            SqliteBackend(path)


class TestGroupCommit:
    async def test_queued_batches_share_one_commit(self, db: SqliteBackend) -> None:
        """Batches queued while the writer waits for the lock commit together, conflicts alone."""
        await db.write([Put("p", "taken", b"")])
        base = db.stats.commits
        blocker = sqlite3.connect(db.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock, as another process would
        tasks = [asyncio.create_task(db.write([Put("p", f"k{i}", b"")])) for i in range(50)]
        tasks.append(asyncio.create_task(db.write([Put("p", "taken", b"")])))
        await asyncio.sleep(0)  # let every task queue its batch (an event-loop turn, not a wait)
        blocker.execute("COMMIT")
        blocker.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [None] * 50 == results[:50]
        assert isinstance(results[50], ConflictError)
        # The writer may have taken the first batch before the rest were queued: at most 2.
        assert db.stats.commits - base <= 2
        assert 1 == db.stats.conflicts
        assert 51 == len(await db.query("p"))

    async def test_stats_count_batches(self, db: SqliteBackend) -> None:
        """Every applied batch is counted, conflicting ones also as conflicts."""
        await db.write([Put("p", "a", b"")])
        with pytest.raises(ConflictError):
            await db.write([Put("p", "a", b"")])
        assert (2, 2, 1) == (db.stats.commits, db.stats.batches, db.stats.conflicts)


class TestSeveralWriters:
    async def test_two_instances_racing_cas_stay_correct(self, tmp_path: Path) -> None:
        """Two backends on one file (two processes' worth of connections) serialise CAS."""
        a = SqliteBackend(tmp_path / "shared.db")
        b = SqliteBackend(tmp_path / "shared.db")
        try:
            await a.write([Put("p", "counter", b"0")])

            async def increment(backend: SqliteBackend) -> int:
                while True:
                    item = await backend.get("p", "counter")
                    assert item is not None
                    new = int(item.value) + 1
                    try:
                        await backend.write([Put("p", "counter", b"%d" % new, expect=item.version)])
                    except ConflictError:
                        continue
                    return new

            results = await asyncio.gather(*(increment(a if i % 2 else b) for i in range(40)))
            assert list(range(1, 41)) == sorted(results)
            assert Item("p", "counter", b"40", 41) == await b.get("p", "counter")
            assert Item("p", "counter", b"40", 41) == await a.get("p", "counter")
        finally:
            await a.close()
            await b.close()

    async def test_one_create_wins_across_instances(self, tmp_path: Path) -> None:
        """Create-if-absent from two instances at once: exactly one winner."""
        a = SqliteBackend(tmp_path / "shared.db")
        b = SqliteBackend(tmp_path / "shared.db")
        try:
            results = await asyncio.gather(
                *((a if i % 2 else b).write([Put("p", "x", b"%d" % i)]) for i in range(20)),
                return_exceptions=True,
            )
            assert 1 == sum(r is None for r in results)
            assert 19 == sum(isinstance(r, ConflictError) for r in results)
        finally:
            await a.close()
            await b.close()

    async def test_lock_timeout_is_unavailable(self, tmp_path: Path) -> None:
        """A write lock held past busy_timeout surfaces as BackendUnavailableError."""
        backend = SqliteBackend(tmp_path / "s.db", busy_timeout_ms=20)
        blocker = sqlite3.connect(backend.path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailableError):
                await backend.write([Put("p", "a", b"")])
            blocker.execute("ROLLBACK")
            await backend.write([Put("p", "a", b"")])  # and it recovers
        finally:
            blocker.close()
            await backend.close()


class TestCheckpoints:
    async def test_the_wal_is_checkpointed_off_the_writer_and_restarts(
        self, tmp_path: Path
    ) -> None:
        """The writer's connection never checkpoints (its commits stay small); the checkpoint
        thread copies the WAL into the database, so the WAL is reused instead of growing."""
        backend = SqliteBackend(tmp_path / "w.db")
        wal = tmp_path / "w.db-wal"
        value = b"v" * 3000
        try:
            sizes = []
            for round_ in range(4):
                for i in range(CHECKPOINT_EVERY_COMMITS):
                    await backend.write([Put("p", f"{round_}-{i}", value)])
                for _ in range(500):
                    if backend.stats.checkpoints > round_:
                        break
                    await asyncio.sleep(0.01)
                sizes.append(wal.stat().st_size)
            assert backend.stats.checkpoints >= 4
            # Without checkpoints the WAL holds every commit: 4x its size after the first 100.
            assert sizes[-1] < 1.5 * sizes[0]
            assert 4 * CHECKPOINT_EVERY_COMMITS == len(await backend.query("p"))
        finally:
            await backend.close()
        reopened = SqliteBackend(tmp_path / "w.db")
        try:
            assert 4 * CHECKPOINT_EVERY_COMMITS == len(await reopened.query("p"))
        finally:
            await reopened.close()


class TestLifecycle:
    async def test_close_finishes_queued_writes(self, tmp_path: Path) -> None:
        """Writes queued before close() still commit and resolve."""
        backend = SqliteBackend(tmp_path / "c.db")
        tasks = [asyncio.create_task(backend.write([Put("p", f"k{i}", b"")])) for i in range(20)]
        await asyncio.sleep(0)  # queue them
        await backend.close()
        assert [None] * 20 == await asyncio.gather(*tasks)
        reopened = SqliteBackend(tmp_path / "c.db")
        try:
            assert 20 == len(await reopened.query("p"))
        finally:
            await reopened.close()

    async def test_use_after_close_raises(self, tmp_path: Path) -> None:
        """Calls after close() raise RuntimeError; close() is idempotent."""
        backend = SqliteBackend(tmp_path / "c.db")
        await backend.close()
        await backend.close()
        with pytest.raises(RuntimeError):
            await backend.write([Put("p", "a", b"")])
        with pytest.raises(RuntimeError):
            await backend.get("p", "a")


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from backends.api import Put
    from backends.sqlite import SqliteBackend

    async def worker(backend, w):
        for i in range(100_000):
            key = f"w{w}-{i:06d}"
            await backend.write([Put("p", key, b"%d" % i), Put(f"q{w}", f"{i:06d}", b"")])
            print(key, flush=True)

    async def main():
        backend = SqliteBackend(sys.argv[1])
        await asyncio.gather(*(worker(backend, w) for w in range(4)))

    asyncio.run(main())
    """
)


class TestDurability:
    def test_acknowledged_writes_survive_kill_9(self, tmp_path: Path) -> None:
        """Every write acknowledged before SIGKILL is in the file after reopening."""
        path = tmp_path / "crash.db"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(ROOT)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        acked: list[str] = []
        try:
            while len(acked) < 400:
                line = child.stdout.readline()
                assert line, f"child exited early with {child.poll()}"
                acked.append(line.strip())
        finally:
            os.kill(child.pid, signal.SIGKILL)
            rest, _ = child.communicate()
        acked += rest.split()  # acknowledged between our last read and the kill
        assert -signal.SIGKILL == child.returncode

        async def check() -> None:
            backend = SqliteBackend(path)
            try:
                stored = {i.sk for i in await backend.query("p")}
                missing = [k for k in acked if k not in stored]
                assert [] == missing
                for w in range(4):  # the other half of each batch is there too
                    assert len(await backend.query(f"q{w}")) >= sum(
                        k.startswith(f"w{w}-") for k in acked
                    )
            finally:
                await backend.close()

        asyncio.run(check())
