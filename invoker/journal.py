"""Journal segments, the record's journal tail, and the per-invocation view loaded from one
partition query.

**Where entries live.** A commit's new entries go into the invocation record itself (its
``tail``) while the tail stays within :data:`TAIL_BUDGET_BYTES`; a commit that would overflow it
writes the tail and its entries as one segment item ``j/{first index}`` and starts an empty tail
(:func:`append`). The journal is the segments in key order, then the tail. Why: every commit
writes the record anyway (its compare-and-set is the fence), so a small step's commit becomes a
single-item write instead of two. On DynamoDB that is a plain conditional ``PutItem`` (1 write
unit for an item under 1 KB) instead of a two-item transaction (4 units by AWS's per-item rule):
``benchmarks/cost_bench.py`` measures it (see ``docs/scale.md``). The budget keeps the record,
typically 350-550 bytes, under DynamoDB's 1 KB write unit with the tail full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from backends.api import Delete, Item, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.processing import Entry, notification_entry, notification_ids
from restate_lambda.protocol.messages import MessageType as T

_seg_encoder = msgspec.msgpack.Encoder()
_seg_decoder = msgspec.msgpack.Decoder(list[tuple[int, bytes]])
_inv_decoder = msgspec.msgpack.Decoder(rec.Invocation)
_pending_decoder = msgspec.msgpack.Decoder(rec.PendingNotification)


def encode_segment(entries: list[Entry]) -> bytes:
    """Encode entries appended by one commit."""
    return _seg_encoder.encode(entries)


def decode_segment(data: bytes) -> list[Entry]:
    """Decode a journal segment."""
    return _seg_decoder.decode(data)


#: Most bytes of entries (payloads plus a few bytes each) the record's tail holds.
TAIL_BUDGET_BYTES = 384
_ENTRY_OVERHEAD = 4


def _tail_bytes(entries: list[Entry]) -> int:
    return sum(len(payload) + _ENTRY_OVERHEAD for _ty, payload in entries)


def append(inv: rec.Invocation, entries: list[Entry]) -> list[WriteOp]:
    """Append ``entries`` to ``inv``'s journal: ``journal_len`` and ``tail`` change, and the
    returned ops (none, or one segment) store what does not stay in the record. The record
    must be written in the same batch. ``inv.tail`` is replaced, never mutated, so a caller
    undoes a failed commit by restoring the old list and length."""
    if not entries:
        return []
    start = inv.journal_len - len(inv.tail)
    inv.journal_len += len(entries)
    if _tail_bytes(inv.tail) + _tail_bytes(entries) <= TAIL_BUDGET_BYTES:
        inv.tail = [*inv.tail, *entries]
        return []
    segment = Put(keys.inv(inv.id), keys.journal(start), encode_segment([*inv.tail, *entries]))
    inv.tail = []
    return [segment]


def in_segments(inv: rec.Invocation) -> bool:
    """Whether some of ``inv``'s journal is stored in segment items (not all in its tail)."""
    return inv.journal_len > len(inv.tail)


def decode_invocation(data: bytes) -> rec.Invocation:
    """Decode an invocation record."""
    return _inv_decoder.decode(data)


@dataclass(slots=True)
class Loaded:
    """Everything in one invocation's partition."""

    invocation: rec.Invocation
    version: int
    entries: list[Entry]
    pending: list[tuple[Item, rec.PendingNotification]] = field(default_factory=list)
    outbox: list[Item] = field(default_factory=list)
    waiters: list[Item] = field(default_factory=list)


def load_partition(items: list[Item]) -> Loaded | None:
    """Assemble an invocation's view from the items of its partition (None if no meta)."""
    meta = next((i for i in items if i.sk == keys.META), None)
    if meta is None:
        return None
    entries: list[Entry] = []
    loaded = Loaded(decode_invocation(meta.value), meta.version, entries)
    inv = loaded.invocation
    # A completed invocation with an empty journal had it purged: segments still there are
    # garbage left by a crash between the record's write and their deletion.
    purged = inv.status == rec.Status.COMPLETED and inv.journal_len == 0
    notes: list[Item] = []
    for item in items:
        sk = item.sk
        if sk.startswith(keys.JOURNAL_PREFIX):
            if not purged:
                entries.extend(decode_segment(item.value))
        elif sk.startswith(keys.NOTIFY_PREFIX):
            notes.append(item)
        elif sk.startswith(keys.OUTBOX_PREFIX):
            loaded.outbox.append(item)
        elif sk.startswith(keys.WAITER_PREFIX):
            loaded.waiters.append(item)
    if not purged:
        entries.extend(inv.tail)
    add_pending(loaded, notes)
    return loaded


def add_pending(loaded: Loaded, notes: list[Item]) -> None:
    """Add the pending-notification items ``notes`` to ``loaded``, in arrival order."""
    for item in notes:
        loaded.pending.append((item, _pending_decoder.decode(item.value)))
    loaded.pending.sort(key=lambda p: (p[1].arrived_ms, p[0].sk))


@dataclass(slots=True)
class Resolved:
    """Which completions and signals the journal already holds."""

    completions: set[int] = field(default_factory=set)
    signals: set[int] = field(default_factory=set)

    def add(self, entry: Entry) -> None:
        """Record a notification entry."""
        ty = entry[0]
        if ty < 0x8000 or ty >= 0xFC00:
            return
        cid, sid, _name = notification_ids(entry)
        if cid is not None:
            self.completions.add(cid)
        if sid is not None:
            self.signals.add(sid)


def resolved_of(entries: list[Entry]) -> Resolved:
    """Scan a journal for the notifications it holds."""
    r = Resolved()
    for e in entries:
        r.add(e)
    return r


def satisfied(
    inv: rec.Invocation, completions: set[int], signals: set[int], named: set[str] | None = None
) -> bool:
    """Whether a suspended invocation can resume given *new* notifications.

    Only notifications the deployment has not seen count: a suspension never waits for
    something that was already in the journal it was sent. A cancel signal always wakes.
    """
    if any(c in completions for c in inv.waiting_completions):
        return True
    if 1 in signals or any(s in signals for s in inv.waiting_signals):
        return True
    return bool(named and any(n in named for n in inv.waiting_named_signals))


def call_children(entries: list[Entry]) -> list[str]:
    """Invocation ids of the calls (not one-way sends) this journal made."""
    from restate_lambda.protocol.messages import parse

    call_notif_ids: set[int] = set()
    children: list[str] = []
    for ty, payload in entries:
        if ty == T.CALL_COMMAND:
            call_notif_ids.add(parse(ty, payload).invocation_id_notification_idx)  # type: ignore[attr-defined]
        elif ty == T.CALL_INVOCATION_ID_COMPLETION_NOTIFICATION:
            msg = parse(ty, payload)
            if msg.completion_id in call_notif_ids:  # type: ignore[attr-defined]
                children.append(msg.invocation_id)  # type: ignore[attr-defined]
    return children


@dataclass(slots=True)
class Pending:
    """What arrived for an invocation since its journal was last appended to."""

    entries: list[Entry] = field(default_factory=list)  # new notifications, in arrival order
    ops: list[WriteOp] = field(default_factory=list)  # deletes of the items they came from
    completions: set[int] = field(default_factory=set)
    signals: set[int] = field(default_factory=set)
    named: set[str] = field(default_factory=set)
    changed: bool = False  # the record or the partition needs a write


def take_pending(loaded: Loaded, now: int) -> Pending:
    """The pending notifications of ``loaded`` and its sleeps due by ``now``, as journal entries
    (duplicates of what the journal holds dropped), with the deletes of their items; due sleeps
    leave the record's timer list. The journal itself is not appended to."""
    inv = loaded.invocation
    out = Pending()
    pending: list[tuple[Item | None, Entry]] = [
        (item, (note.msg_type, note.payload)) for item, note in loaded.pending
    ]
    fired = [(cid, wake) for cid, wake in inv.timers if wake <= now]
    if not pending and not fired:
        return out  # (the common case: no need to scan the journal)
    resolved = resolved_of(loaded.entries)
    if fired:
        inv.timers = [t for t in inv.timers if t[1] > now]
        for sleep_id, _wake in sorted(fired, key=lambda t: (t[1], t[0])):
            pending.append(
                (None, notification_entry(int(T.SLEEP_COMPLETION_NOTIFICATION), sleep_id, None))
            )
    for note_item, entry in pending:
        if note_item is not None:
            out.ops.append(Delete(note_item.pk, note_item.sk, expect=note_item.version))
        cid, sid, name = notification_ids(entry)
        if cid is not None and cid in resolved.completions:
            continue
        if sid is not None and sid in resolved.signals:
            continue
        resolved.add(entry)
        out.entries.append(entry)
        if cid is not None:
            out.completions.add(cid)
        if sid is not None:
            out.signals.add(sid)
        if name is not None:
            out.named.add(name)
    out.changed = bool(fired or out.ops)
    return out
