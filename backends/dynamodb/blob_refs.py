"""Which blob each item referred to when this process last saw it: a bounded, thread-safe cache.

Reads (every decoded item) and committed writes record ``(pk, sk) -> blob key`` for items whose
value lives in S3, and forget keys whose value is inline or that were deleted. Two users:

* the write path starts a replacing or deleting operation's blob guard from the cached key, so
  the first attempt usually already names the right blob (see :mod:`backends.dynamodb.writes`);
* ``delete_items`` (a ``BatchWriteItem``, which cannot return or condition on old values) deletes
  the cached blobs of the items it deleted.

A stale entry is harmless: blob keys are unique per upload, so the blob an item referred to at
any time is garbage once that item is deleted or overwritten; deleting it late, or twice, is safe.
A missing entry only leaves a blob for the sweep (:mod:`backends.dynamodb.blob_gc`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

#: Items remembered; an entry is a key pair and a blob key, a few hundred bytes.
DEFAULT_SIZE: Final = 4096


class RefCache:
    """Least-recently-used map of ``(pk, sk) -> blob key``.

    Args:
        size: most entries kept.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        """An empty cache."""
        self._size = size
        self._refs: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, pk: str, sk: str, ref: str | None) -> None:
        """Record that the item refers to ``ref`` (``None``: to no blob)."""
        with self._lock:
            if ref is None:
                self._refs.pop((pk, sk), None)
                return
            self._refs[(pk, sk)] = ref
            self._refs.move_to_end((pk, sk))
            while len(self._refs) > self._size:
                self._refs.popitem(last=False)

    def get(self, pk: str, sk: str) -> str | None:
        """The blob the item last referred to, if known."""
        with self._lock:
            return self._refs.get((pk, sk))

    def pop(self, pk: str, sk: str) -> str | None:
        """Forget the item; return the blob it last referred to, if known."""
        with self._lock:
            return self._refs.pop((pk, sk), None)

    def __len__(self) -> int:
        """Number of items remembered."""
        with self._lock:
            return len(self._refs)
