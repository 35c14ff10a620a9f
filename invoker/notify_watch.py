"""Which invocations may hold notifications this process has not read yet (sole engine only).

An attempt running in this process asks, at every checkpoint and every HTTP/2 wake-up, for the
notifications stored for its invocation meanwhile (a completion, a signal): one range read of
the partition's ``n/`` items per durable step. On SQLite that read was 0.07 ms of the 0.54 ms a
step cost in process (``benchmarks/step_bench.py``, async body, 2026-11-30: 0.47 ms without it).

On a store no other process writes (``Engine(sole=True)``: ``restate-lambda dev`` on the data
directory it holds locked) every notification is written by this process's
:class:`invoker.commit.Committer`, which reports each write's end here. The read can then be
skipped while no notification write for the invocation has ended since an earlier read, started
after every such write, found none. The rules that keep the skip safe:

* A write is counted when it *ends*, never when it starts: a read that overlaps a write counts
  as older than it, so the next ask reads again.
* A write that ended without a known outcome (cancelled, or failed with anything but a
  conflict) may still be applied later by the backend's own thread or server: its partition is
  never skipped again. Past :data:`LIMIT` such partitions the watch stops skipping altogether.
* A read that found notifications is not remembered: the next ask reads again, whether or not
  the commit that journals them applied.
* Memory is bounded: past :data:`LIMIT` remembered partitions everything is forgotten, and
  reads that started before that moment are not trusted.
"""

from __future__ import annotations

from collections.abc import Sequence

from backends.api import Put, WriteOp
from invoker import keys

#: Most partitions remembered (written and quiet ones together; poisoned ones separately).
LIMIT = 4096


class NotificationWatch:
    """Tells whether an invocation's notifications must be read again (see the module
    docstring). One per engine; only for an engine that is its store's only writer."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        #: notification writes ended so far (the watch's clock)
        self._seq = 0
        #: reads that started before this seq are not trusted (memory was cleared)
        self._floor = 0
        #: pk -> seq at which the last notification write to it ended
        self._written: dict[str, int] = {}
        #: pk -> seq at the start of the last read that found no notification
        self._quiet: dict[str, int] = {}
        #: partitions with a write of unknown outcome: always read
        self._poisoned: set[str] = set()
        self._off = False

    def ended(self, ops: Sequence[WriteOp], *, known: bool) -> None:
        """Record the end of a write of ``ops``: ``known`` when it applied or conflicted
        (nothing applied), False when its outcome is unknown."""
        pks = [op.pk for op in ops if type(op) is Put and op.sk.startswith(keys.NOTIFY_PREFIX)]
        if not pks:
            return
        if not known:
            self._poisoned.update(pks)
            if len(self._poisoned) > self._limit:
                self._off = True
            return
        self._seq += 1
        for pk in pks:
            self._written[pk] = self._seq
        self._bound()

    def quiet(self, pk: str) -> bool:
        """Whether partition ``pk`` certainly holds no notification a read would return."""
        if self._off or pk in self._poisoned:
            return False
        since = self._quiet.get(pk)
        return since is not None and since >= self._floor and self._written.get(pk, 0) <= since

    def mark(self) -> int:
        """Take before a read of notifications; hand to :meth:`read` after it."""
        return self._seq

    def read(self, pk: str, mark: int, *, found: bool) -> None:
        """Record a read of ``pk``'s notifications that started at ``mark``."""
        if found:
            self._quiet.pop(pk, None)
            return
        self._quiet[pk] = mark
        self._bound()

    def _bound(self) -> None:
        if len(self._written) + len(self._quiet) > self._limit:
            self._written.clear()
            self._quiet.clear()
            self._floor = self._seq
