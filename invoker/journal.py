"""Journal segments and the per-invocation view loaded from one partition query."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from backends.api import Item
from invoker import keys
from invoker import records as rec
from invoker.processing import Entry, notification_ids
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
    for item in items:
        sk = item.sk
        if sk.startswith(keys.JOURNAL_PREFIX):
            entries.extend(decode_segment(item.value))
        elif sk.startswith(keys.NOTIFY_PREFIX):
            loaded.pending.append((item, _pending_decoder.decode(item.value)))
        elif sk.startswith(keys.OUTBOX_PREFIX):
            loaded.outbox.append(item)
        elif sk.startswith(keys.WAITER_PREFIX):
            loaded.waiters.append(item)
    loaded.pending.sort(key=lambda p: (p[1].arrived_ms, p[0].sk))
    return loaded


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
