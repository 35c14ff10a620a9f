-- Schema of the SQLite backend (PRAGMA user_version = 1). See backends/sqlite.py.
-- Keys are TEXT compared with the BINARY collation: memcmp over UTF-8, the contract's order.
CREATE TABLE IF NOT EXISTS items (
    pk      TEXT    NOT NULL,
    sk      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    value   BLOB    NOT NULL,
    due_ms  INTEGER,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;

-- The due index holds only items that have a due time (timers, backoff, leases).
CREATE INDEX IF NOT EXISTS items_due ON items (due_ms, pk, sk) WHERE due_ms IS NOT NULL;
