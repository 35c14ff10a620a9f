"""SQLite backend: the embedded default, one database file, stdlib :mod:`sqlite3`.

(Over 500 lines on purpose: one class whose reads, group commit and writer thread share one
connection and its locking; split, they would share private state across modules.)

**Layout.** One table (DDL in ``backends/sqlite.sql``, versioned by ``PRAGMA user_version``)::

    items(pk TEXT, sk TEXT, version INTEGER, value BLOB, due_ms INTEGER NULL,
          PRIMARY KEY (pk, sk)) WITHOUT ROWID
    items_due ON items(due_ms, pk, sk) WHERE due_ms IS NOT NULL

TEXT keys use SQLite's BINARY collation (``memcmp`` over UTF-8), which is exactly the contract's
sort order. A prefix query is the index range ``prefix <= sk < upper(prefix)``.

**Operations.**

============  ==================================================================================
put expect=0  ``INSERT ... ON CONFLICT DO NOTHING``; no row inserted -> conflict
put expect=n  ``UPDATE ... SET version = version + 1 WHERE ... AND version = n``; 0 rows -> conflict
put None      ``INSERT ... ON CONFLICT DO UPDATE SET version = version + 1`` (upsert)
delete        ``DELETE ... WHERE pk, sk [AND version = n]``; 0 rows with ``n`` -> conflict
check / 0     ``SELECT version``, compared in Python
query         ``SELECT ... WHERE pk = ? AND sk >= ? AND sk < ? [AND sk > after] ORDER BY sk``
due           ``SELECT ... WHERE due_ms <= ? ORDER BY due_ms, pk, sk LIMIT ?`` (partial index)
scan          ``SELECT ... WHERE pk >= ? AND pk < ? AND sk = ? ORDER BY pk``
============  ==================================================================================

**Threads and group commit.** One writer thread owns the only writing connection. ``write()``
validates the batch on the caller's thread, queues it with an :class:`asyncio.Future` and awaits.
The writer takes every queued batch, opens one ``BEGIN IMMEDIATE`` transaction, applies each batch
inside its own ``SAVEPOINT`` (a batch whose condition fails is rolled back to its savepoint and gets
:class:`~backends.api.ConflictError`; the others proceed), ``COMMIT``\\ s once and only then
resolves the futures through ``loop.call_soon_threadsafe``. Under load many batches share one
commit (see :attr:`SqliteBackend.stats`).

**Reads** use their own connections: in WAL mode readers never block the writer, and every read
statement starts a fresh snapshot, so a read issued after ``write()`` returned sees the write
(also one made by another process). By default a read runs on the calling thread through a
per-thread connection: measured on the 2-core dev box, a point read costs ~10 us there against
~130-200 us for a hop to a thread and back (50k vs 7.5k reads/s sequential, 65k vs 23k at 16
tasks). The exception: with the inline writer (the default), a read on the event loop's thread
between two of its transactions uses the writer's connection, whose page cache its own commits
leave valid (a reader connection re-reads its pages after every commit: 23-30 us per point read
next to commits against 11-13). ``readers=N`` moves reads to a pool of N threads instead, for
workloads with long scans that must not hold up the event loop.

**Durability.** WAL journal with ``synchronous=NORMAL``: a commit reaches the WAL file (the OS page
cache) before ``write()`` returns, so it survives the process being killed (``kill -9``); an OS
crash or power loss may lose the last commits. Pass ``synchronous="FULL"`` for that bar.

**Several processes.** Every condition is checked inside the ``BEGIN IMMEDIATE`` transaction that
applies it, which holds SQLite's write lock, so any number of processes (or instances) may share a
file; they queue on the lock through ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from backends._batch import (
    check_key,
    check_limit,
    check_query,
    prefix_upper_bound,
    validate_batch,
)
from backends.api import (
    BackendError,
    BackendUnavailableError,
    Check,
    ConflictError,
    Delete,
    Item,
    Put,
    WriteOp,
)

#: Schema version this module writes (``PRAGMA user_version``).
SCHEMA_VERSION: Final = 1

_T = TypeVar("_T")
#: The writer asks the checkpoint thread for a WAL checkpoint after this many commits (a commit
#: writes a handful of pages; SQLite's own automatic checkpoint starts at 1,000).
CHECKPOINT_EVERY_COMMITS: Final = 100
_COLUMNS = "pk, sk, value, version, due_ms"
_Row = tuple[str, str, bytes, int, int | None]


@dataclass(slots=True)
class SqliteStats:
    """Counters kept by the writer thread (monotonic; read them for tests and benchmarks).

    Attributes:
        commits: transactions committed (one per group of batches).
        batches: ``write()`` batches applied, whether they committed or conflicted.
        conflicts: batches rejected with :class:`~backends.api.ConflictError`.
        checkpoints: WAL checkpoints run by the checkpoint thread.
    """

    commits: int = 0
    batches: int = 0
    conflicts: int = 0
    checkpoints: int = 0


@dataclass(slots=True)
class _Request:
    ops: Sequence[WriteOp]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


_STOP: Final = object()


class SqliteBackend:
    """A :class:`~backends.api.Backend` in one SQLite file (created with its parent directory).

    Args:
        path: the database file.
        readers: reader threads, each with its own connection. ``0`` (the default) reads on
            the calling thread through a per-thread connection: a point read costs ~10 us
            there against ~200 us for the hop to a thread and back (see the module docstring).
        busy_timeout_ms: how long a connection waits for another process's write lock before
            the write fails with :class:`~backends.api.BackendUnavailableError`.
        synchronous: ``"NORMAL"`` (survives process crashes) or ``"FULL"`` (also OS crashes).
        max_group_ops: most operations the writer puts into one group commit.
        writer: ``"inline"`` (the default) commits on the event loop's thread: every
            ``write()`` issued in one loop iteration joins one group commit, run by a callback
            scheduled with ``call_soon``; a small WAL commit without fsync costs ~40 us, far
            less than the ~130 us hop to a thread and back. ``"thread"`` commits on a
            dedicated writer thread instead (for workloads whose commits must not hold up the
            loop, e.g. when other processes contend for the file's write lock).
    """

    max_value_bytes: int = 64 * 1024 * 1024
    max_batch_ops: int = 10_000
    supports_expiry: bool = False

    def __init__(
        self,
        path: str | Path,
        *,
        readers: int = 0,
        busy_timeout_ms: int = 30_000,
        synchronous: str = "NORMAL",
        max_group_ops: int = 20_000,
        writer: str = "inline",
    ) -> None:
        """Open (creating or migrating) the database and start the writer and reader threads."""
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        if readers < 0:
            raise ValueError("readers must be >= 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stats = SqliteStats()
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous.upper()
        self._max_group_ops = max_group_ops
        self._closed = False
        self._close_lock = threading.Lock()

        _migrate(self._connect())

        if writer not in ("inline", "thread"):
            raise ValueError(f"writer must be 'inline' or 'thread', not {writer!r}")
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._inline_conn: sqlite3.Connection | None = None
        #: The thread of the event loop that writes through ``_inline_conn`` (its last write).
        self._inline_thread: int | None = None
        self._pending: list[_Request] = []
        if writer == "thread":
            self._writer = threading.Thread(
                target=self._writer_main,
                args=(self._connect(writer=True),),
                name="sqlite-writer",
                daemon=True,
            )
            self._writer.start()
        else:
            self._inline_conn = self._connect(writer=True)
        self._checkpoint_wanted = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpointer_main,
            args=(self._connect(),),
            name="sqlite-checkpointer",
            daemon=True,
        )
        self._checkpointer.start()
        # Every reader connection ever opened, to close them all in close().
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._local = threading.local()
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._readers: ThreadPoolExecutor | None = None
        if readers:
            for _ in range(readers):
                self._pool.put(self._reader_connection())
            self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")

    def _connect(self, *, query_only: bool = False, writer: bool = False) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: a
        # connection is created here and used by exactly one thread at a time afterwards.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        if query_only:
            conn.execute("PRAGMA query_only = 1")
        if writer:
            # The checkpoint thread moves WAL frames into the database (see _checkpointer_main).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    def _checkpointer_main(self, conn: sqlite3.Connection) -> None:
        """Checkpoint the WAL off the writer's thread, whenever the writer asks for it.

        SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses 1,000 WAL pages,
        on the writer's thread: with the inline writer that is the event loop, which then
        stalls for the copy and its fsyncs. Here a ``PASSIVE`` checkpoint (it never blocks the
        writer or readers) runs on this thread with the GIL released, every
        :data:`CHECKPOINT_EVERY_COMMITS` commits; the writer restarts the WAL from its
        beginning at its next transaction once everything was copied. Measured on the 2-core
        dev box (a microbenchmark of 3-row commits): ``COMMIT`` 51-55 us without
        the automatic checkpoint against 75-92 us with it.
        """
        try:
            while True:
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                if self._closed:
                    break
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.stats.checkpoints += 1
        finally:
            conn.close()

    # -- reads -------------------------------------------------------------------------------

    def _reader_connection(self) -> sqlite3.Connection:
        conn = self._connect(query_only=True)
        with self._conns_lock:
            self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise RuntimeError("SqliteBackend is closed")
        inline = self._inline_conn
        if (
            self._readers is None
            and inline is not None
            and self._inline_thread == threading.get_ident()
            and not inline.in_transaction
        ):
            # The inline writer's own connection, between its transactions, on its thread: its
            # page cache stays valid (a reader connection's is dropped after every commit of the
            # writer, and each read then fetches its pages again: measured next to one-row
            # commits, 23-30 us per point read instead of 11-13).
            return _run_read(inline, fn)
        if self._readers is None:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._reader_connection()
            return _run_read(conn, fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_pooled, fn)

    def _run_pooled(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._pool.get()
        try:
            return _run_read(conn, fn)
        finally:
            self._pool.put(conn)

    async def get(self, pk: str, sk: str) -> Item | None:
        """Return the item, or ``None``."""
        check_key(pk, sk)
        sql = f"SELECT {_COLUMNS} FROM items WHERE pk = ? AND sk = ?"
        rows: list[_Row] = await self._read(lambda c: c.execute(sql, (pk, sk)).fetchall())
        return Item(*rows[0]) if rows else None

    async def query(
        self,
        pk: str,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
    ) -> list[Item]:
        """Items of ``pk`` whose sort key starts with ``prefix``, in sort-key order."""
        check_query(pk, prefix, after, limit)
        if limit == 0:
            return []
        where = ["pk = ?"]
        args: list[Any] = [pk]
        if prefix:
            where.append("sk >= ?")
            args.append(prefix)
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                where.append("sk < ?")
                args.append(upper)
        if after is not None:
            where.append("sk < ?" if reverse else "sk > ?")
            args.append(after)
        args.append(-1 if limit is None else limit)
        sql = (
            f"SELECT {_COLUMNS} FROM items WHERE {' AND '.join(where)} "
            f"ORDER BY sk {'DESC' if reverse else 'ASC'} LIMIT ?"
        )
        rows: list[_Row] = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [Item(*row) for row in rows]

    async def due(self, until_ms: int, limit: int) -> list[Item]:
        """Items with ``due_ms <= until_ms`` ordered by ``(due_ms, pk, sk)``, at most ``limit``."""
        check_limit(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM items WHERE due_ms IS NOT NULL AND due_ms <= ? "
            "ORDER BY due_ms, pk, sk LIMIT ?"
        )
        rows: list[_Row] = await self._read(lambda c: c.execute(sql, (until_ms, limit)).fetchall())
        return [Item(*row) for row in rows]

    async def scan(self, pk_prefix: str, sk: str, *, limit: int | None = None) -> list[Item]:
        """Items whose pk starts with ``pk_prefix`` and whose sort key is ``sk``, by pk."""
        check_key(pk_prefix, sk)
        check_limit(limit)
        where = ["pk >= ?"]
        args: list[Any] = [pk_prefix]
        upper = prefix_upper_bound(pk_prefix)
        if upper is not None:
            where.append("pk < ?")
            args.append(upper)
        args += [sk, -1 if limit is None else limit]
        sql = (
            f"SELECT {_COLUMNS} FROM items WHERE {' AND '.join(where)} AND sk = ? "
            "ORDER BY pk LIMIT ?"
        )
        rows: list[_Row] = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [Item(*row) for row in rows]

    # -- writes ------------------------------------------------------------------------------

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops`` atomically and durably, or raise ``ConflictError`` and apply none.

        If the awaiting task is cancelled after the batch was queued, the batch may still commit.
        """
        validate_batch(ops, max_ops=self.max_batch_ops, max_value_bytes=self.max_value_bytes)
        if self._closed:
            raise RuntimeError("SqliteBackend is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._inline_conn is None:
            self._queue.put(_Request(ops, loop, future))
        else:
            self._inline_thread = threading.get_ident()
            if not self._pending:
                loop.call_soon(self._flush_inline)
            self._pending.append(_Request(ops, loop, future))
        await future

    async def delete_items(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the items at ``keys``; absent ones are ignored (one transaction here)."""
        for start in range(0, len(keys), self.max_batch_ops):
            chunk = keys[start : start + self.max_batch_ops]
            if chunk:
                await self.write([Delete(pk, sk) for pk, sk in chunk])

    def _flush_inline(self) -> None:
        """Commit every write queued in this loop iteration as one group (inline writer)."""
        conn = self._inline_conn
        while self._pending:
            group: list[_Request] = []
            n_ops = 0
            for request in self._pending:
                if group and n_ops + len(request.ops) > self._max_group_ops:
                    break
                group.append(request)
                n_ops += len(request.ops)
            del self._pending[: len(group)]
            if conn is None:
                outcomes: list[BaseException | None] = [
                    RuntimeError("SqliteBackend is closed")
                ] * len(group)
            else:
                outcomes = self._commit_group(conn, group)
            for request, outcome in zip(group, outcomes, strict=True):
                if request.future.done():
                    continue
                if outcome is None:
                    request.future.set_result(None)
                else:
                    request.future.set_exception(outcome)

    def _writer_main(self, conn: sqlite3.Connection) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is _STOP:
                    break
                assert isinstance(first, _Request)
                group = [first]
                n_ops = len(first.ops)
                while n_ops < self._max_group_ops:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    assert isinstance(nxt, _Request)
                    group.append(nxt)
                    n_ops += len(nxt.ops)
                _resolve(group, self._commit_group(conn, group))
        finally:
            conn.close()
            # A write that raced close() past its closed-check is failed, not left hanging.
            leftovers: list[_Request] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._queue.get_nowait()
                    if isinstance(item, _Request):
                        leftovers.append(item)
            _resolve(leftovers, [RuntimeError("SqliteBackend is closed")] * len(leftovers))

    def _commit_group(
        self, conn: sqlite3.Connection, group: list[_Request]
    ) -> list[BaseException | None]:
        """Commit a group of batches; each batch applies entirely or not at all.

        Optimistic first: every batch applied straight into the one transaction, no savepoints
        (two statements fewer per batch). If any batch fails, the whole transaction is rolled
        back and the group is applied again with a savepoint around each batch.
        """
        outcomes = self._try_group(conn, group, savepoints=False)
        if outcomes is None:
            outcomes = self._try_group(conn, group, savepoints=True)
            assert outcomes is not None
        return outcomes

    def _try_group(
        self, conn: sqlite3.Connection, group: list[_Request], *, savepoints: bool
    ) -> list[BaseException | None] | None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            err = BackendUnavailableError(f"sqlite: cannot start a write transaction: {e}")
            return [err] * len(group)
        outcomes: list[BaseException | None] = []
        try:
            for request in group:
                # A single-op batch needs no savepoint: a failed condition wrote nothing.
                savepoint = savepoints and len(request.ops) > 1
                if savepoint:
                    conn.execute("SAVEPOINT batch")
                try:
                    outcome: BaseException | None = _apply(conn, request.ops)
                except sqlite3.Error as e:
                    outcome = BackendError(f"sqlite write failed: {e}")
                    if not conn.in_transaction:  # SQLite rolled back the whole transaction
                        raise
                if savepoint:
                    if outcome is not None:
                        conn.execute("ROLLBACK TO batch")
                    conn.execute("RELEASE batch")
                elif outcome is not None and not savepoints and len(request.ops) > 1:
                    conn.execute("ROLLBACK")  # part of this batch may be applied: start over
                    return None
                outcomes.append(outcome)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [BackendUnavailableError(f"sqlite commit failed: {e}")] * len(group)
        self.stats.commits += 1
        if self.stats.commits % CHECKPOINT_EVERY_COMMITS == 0:
            self._checkpoint_wanted.set()
        self.stats.batches += len(group)
        self.stats.conflicts += sum(isinstance(o, ConflictError) for o in outcomes)
        return outcomes

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes, then stop the threads and close the connections. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        else:
            if self._pending:
                self._flush_inline()
            if self._inline_conn is not None:
                self._inline_conn.close()
                self._inline_conn = None
        self._checkpoint_wanted.set()
        await asyncio.to_thread(self._checkpointer.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()


def _run_read(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    try:
        return fn(conn)
    except sqlite3.OperationalError as e:  # busy or I/O trouble: worth a retry
        raise BackendUnavailableError(f"sqlite read failed: {e}") from e


def _apply(conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> ConflictError | None:
    """Apply one batch inside the current transaction; return the first failed condition."""
    for i, op in enumerate(ops):
        key = (op.pk, op.sk)
        if isinstance(op, Put):
            value = bytes(op.value)
            if op.expect is None:
                conn.execute(
                    "INSERT INTO items (pk, sk, version, value, due_ms) VALUES (?, ?, 1, ?, ?) "
                    "ON CONFLICT (pk, sk) DO UPDATE SET version = version + 1, "
                    "value = excluded.value, due_ms = excluded.due_ms",
                    (*key, value, op.due_ms),
                )
                continue
            if op.expect == 0:
                cur = conn.execute(
                    "INSERT INTO items (pk, sk, version, value, due_ms) VALUES (?, ?, 1, ?, ?) "
                    "ON CONFLICT (pk, sk) DO NOTHING",
                    (*key, value, op.due_ms),
                )
            else:
                cur = conn.execute(
                    "UPDATE items SET version = version + 1, value = ?, due_ms = ? "
                    "WHERE pk = ? AND sk = ? AND version = ?",
                    (value, op.due_ms, *key, op.expect),
                )
            if cur.rowcount != 1:
                return _conflict(conn, i, op)
        elif isinstance(op, Delete) and op.expect != 0:
            if op.expect is None:
                conn.execute("DELETE FROM items WHERE pk = ? AND sk = ?", key)
            else:
                cur = conn.execute(
                    "DELETE FROM items WHERE pk = ? AND sk = ? AND version = ?", (*key, op.expect)
                )
                if cur.rowcount != 1:
                    return _conflict(conn, i, op)
        else:
            # Check, or Delete with expect=0 ("must be absent": deleting nothing).
            assert isinstance(op, Check | Delete)
            if _version(conn, *key) != op.expect:
                return _conflict(conn, i, op)
    return None


def _version(conn: sqlite3.Connection, pk: str, sk: str) -> int:
    rows = conn.execute("SELECT version FROM items WHERE pk = ? AND sk = ?", (pk, sk)).fetchall()
    return int(rows[0][0]) if rows else 0


def _conflict(conn: sqlite3.Connection, index: int, op: WriteOp) -> ConflictError:
    found = _version(conn, op.pk, op.sk)
    state = "absent" if found == 0 else f"at version {found}"
    want = "absent" if op.expect == 0 else f"at version {op.expect}"
    return ConflictError(f"item {op.pk!r}/{op.sk!r} expected {want}, found {state}", index=index)


def _resolve(group: list[_Request], outcomes: list[BaseException | None]) -> None:
    """Hand results back to each request's event loop: one wake-up per loop, not per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], Any]]] = {}
    for request, outcome in zip(group, outcomes, strict=True):
        by_loop.setdefault(request.loop, []).append((request.future, outcome))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody is waiting
            loop.call_soon_threadsafe(_set_outcomes, pairs)


def _set_outcomes(pairs: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, outcome in pairs:
        if future.done():  # cancelled by its caller
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


def _migrate(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema to :data:`SCHEMA_VERSION`, then close ``conn``."""
    try:
        conn.execute("BEGIN IMMEDIATE")  # serialises concurrent first opens of one file
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            conn.execute("ROLLBACK")
            raise BackendError(
                f"database schema version {version} is newer than this code supports "
                f"({SCHEMA_VERSION}); upgrade restate-lambda"
            )
        if version < 1:
            ddl = importlib.resources.files("backends").joinpath("sqlite.sql").read_text("utf-8")
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
        # Future migrations: `if version < 2: ...` each followed by its statements.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    finally:
        conn.close()
