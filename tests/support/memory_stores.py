"""Memory stores for engine tests: one that claims DynamoDB's item expiry, one that records
every batch it applies."""

from __future__ import annotations

from collections.abc import Sequence

from backends.api import WriteOp
from backends.memory import MemoryBackend


class ExpiringMemoryBackend(MemoryBackend):
    """Claims item expiry as DynamoDB's TTL does and, like DynamoDB Local, never deletes: the
    engine then ends invocations that left only their record with an expiry, not a purge."""

    supports_expiry = True


class RecordingMemoryBackend(MemoryBackend):
    """Records every batch it applies (``batches``); with ``expiry``, claims item expiry as
    :class:`ExpiringMemoryBackend` does."""

    def __init__(self, *, expiry: bool = False) -> None:
        super().__init__()
        self.batches: list[list[WriteOp]] = []
        self.supports_expiry = expiry

    async def write(self, ops: Sequence[WriteOp]) -> None:
        """Apply ``ops``, then record them."""
        await super().write(ops)
        self.batches.append(list(ops))
