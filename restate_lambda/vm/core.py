"""The core of the protocol state machine (V5/V6): phases, input and output, replay-or-emit.

Pure: bytes in (:meth:`MachineCore.feed`), bytes out (:meth:`MachineCore.take_output`), no
I/O. :class:`~restate_lambda.vm.machine.Machine` adds commands, runs and awaiting on top.

Every command goes through one helper, :meth:`MachineCore._command`: while the attempt replays
it pops the journaled command and checks it against the one the handler produces now (journal
mismatch 570 otherwise); once the journal is exhausted it writes the new command.
"""

from __future__ import annotations

import hashlib
from collections import deque
from enum import Enum
from typing import Any

from restate_lambda.awaitables import CANCEL_HANDLE, Result
from restate_lambda.protocol.errors import PROTOCOL_VIOLATION, ProtocolError
from restate_lambda.protocol.framing import FrameDecoder, encode_raw
from restate_lambda.protocol.messages import MessageType, is_command, is_notification, parse, pb
from restate_lambda.vm.journal import Journal, VMError, command_name, decode_notification

T = MessageType


class Phase(Enum):
    """Where an attempt is in its life."""

    WAITING_START = "waiting for the StartMessage"
    WAITING_ENTRIES = "waiting for the journal"
    REPLAYING = "replaying"
    PROCESSING = "processing"
    CLOSED = "closed"


class MachineCore:
    """Input, output, phases and the journal cursor of one invocation attempt."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.phase = Phase.WAITING_START
        self.error: VMError | None = None
        self.input_closed = False
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self._out_entries = 0  # journal entries among _out: commands, proposed run completions
        self.journal = Journal()
        self.start: Any = None
        self._received = 0
        self._first_new = False
        self._completion = 1
        self._signal = 17
        self._next_handle = 17
        self.handles: dict[int, int | str] = {CANCEL_HANDLE: -1}
        self.ready: dict[int | str, Result] = {}
        self.delivered: deque[tuple[int | str, Result]] = deque()
        self.state: dict[str, bytes | None] = {}
        self.partial_state = True
        #: Journal index the first entry of the pending output will get (request-response).
        self.journal_index = 0

    # ------------------------------------------------------------------ input / output

    def feed(self, data: bytes) -> None:
        """Consume bytes of the request stream."""
        if self.error is not None or self.phase is Phase.CLOSED:
            return
        try:
            for frame in self._decoder.feed(data):
                self._on_message(frame.type, frame.payload)
        except ProtocolError as e:
            self._fail(VMError(e.code, e.message))
        except VMError as e:
            self._fail(e)

    def close_input(self) -> None:
        """The runtime closed its side of the stream."""
        self.input_closed = True
        if self.error is not None or self.phase is Phase.CLOSED:
            return
        try:
            self._decoder.finish()
        except ProtocolError as e:
            self._fail(VMError(e.code, e.message))
            return
        if self.phase in (Phase.WAITING_START, Phase.WAITING_ENTRIES):
            self._fail(VMError(PROTOCOL_VIOLATION, "input closed before the journal was replayed"))

    def feed_notifications(self, data: bytes) -> int:
        """Take notifications handed over outside the request stream (a checkpoint's reply):
        they count as delivered after everything received so far. Returns how many."""
        decoder = FrameDecoder()
        try:
            frames = decoder.feed(data)
            decoder.finish()
            for f in frames:
                if not is_notification(f.type):
                    raise VMError(
                        PROTOCOL_VIOLATION,
                        f"a checkpoint reply may only hold notifications, got 0x{f.type:04X}",
                    )
                self.delivered.append(decode_notification(f.type, f.payload))
        except ProtocolError as e:
            raise self._guard(VMError(e.code, e.message)) from None
        except VMError as e:
            raise self._guard(e) from None
        return len(frames)

    def take_output(self) -> bytes:
        """Frames written since the last call."""
        out = b"".join(self._out)
        self._out.clear()
        self._out_entries = 0
        return out

    def take_entries(self) -> tuple[int, bytes, int]:
        """The pending output for a checkpoint: (journal index of its first entry, framed
        entries, number of entries). Only journal entries may be pending."""
        index, count = self.journal_index, self._out_entries
        if count != len(self._out):
            raise self._guard(
                VMError(PROTOCOL_VIOLATION, "only journal entries can be checkpointed")
            )
        return index, self.take_output(), count

    @property
    def closed(self) -> bool:
        """True once End, Suspension or Error was written."""
        return self.phase is Phase.CLOSED or self.error is not None

    def is_ready(self) -> bool:
        """True once the start message and all known entries arrived (VMError if failed)."""
        if self.error is not None:
            raise self.error
        return self.phase in (Phase.REPLAYING, Phase.PROCESSING)

    def is_replaying(self) -> bool:
        """True while commands remain to be replayed."""
        return self.phase is Phase.REPLAYING

    def _on_message(self, t: int, payload: bytes) -> None:
        if t == T.START:
            if self.phase is not Phase.WAITING_START:
                raise VMError(PROTOCOL_VIOLATION, "unexpected second StartMessage")
            self._on_start(parse(t, payload))
            return
        if self.phase is Phase.WAITING_START:
            raise VMError(PROTOCOL_VIOLATION, "the first message must be a StartMessage")
        if is_command(t):
            if self.phase is not Phase.WAITING_ENTRIES:
                raise VMError(PROTOCOL_VIOLATION, "commands are only expected during replay")
            self.journal.commands.append((t, payload))
        elif is_notification(t):
            self.delivered.append(decode_notification(t, payload))
        else:
            raise VMError(PROTOCOL_VIOLATION, f"unexpected message type 0x{t:04X}")
        if self.phase is Phase.WAITING_ENTRIES:
            self._received += 1
            if self._received >= self.start.known_entries:
                self.phase = Phase.REPLAYING

    def _on_start(self, msg: Any) -> None:
        self.start = msg
        self.partial_state = bool(msg.partial_state)
        for entry in msg.state_map:
            self.state[bytes(entry.key).decode()] = bytes(entry.value)
        if msg.known_entries == 0:
            raise VMError(500, "StartMessage.known_entries is 0, expected at least 1")
        self.journal_index = int(msg.known_entries)
        self.phase = Phase.WAITING_ENTRIES

    def _emit(self, t: int, payload: bytes, entry: bool) -> None:
        self._out.append(encode_raw(t, payload))
        if entry:
            self._out_entries += 1

    def _fail(self, err: VMError) -> None:
        if self.error is None and self.phase is not Phase.CLOSED:
            self._out.append(err.to_frame())
        self.error = err
        self.phase = Phase.CLOSED

    def _guard(self, err: VMError) -> VMError:
        self._fail(err)
        return err

    def _state_error(self, what: str) -> VMError:
        if self.error is not None:
            return self.error
        return VMError(PROTOCOL_VIOLATION, f"cannot {what} in the current state (closed)")

    # ------------------------------------------------------------------ invocation data

    @property
    def invocation_id(self) -> str:
        """The printable invocation id (``inv_1…``)."""
        return str(self.start.debug_id)

    @property
    def key(self) -> str:
        """Object/workflow key, empty for services."""
        return str(self.start.key)

    @property
    def random_seed(self) -> int:
        """V6: StartMessage.random_seed; V5: first 8 bytes of SHA-256(invocation id), BE."""
        if self.version >= 6:
            return int(self.start.random_seed)
        return int.from_bytes(hashlib.sha256(bytes(self.start.id)).digest()[:8], "big")

    def sys_input(self) -> tuple[list[tuple[str, str]], bytes]:
        """Replay the InputCommand: (headers, body)."""
        _, msg = self._command(T.INPUT_COMMAND, pb().InputCommandMessage())
        return [(h.key, h.value) for h in msg.headers], bytes(msg.value.content)

    # ------------------------------------------------------------------ replay or emit

    def _command(self, t: int, msg: Any, alt: tuple[int, Any] | None = None) -> tuple[int, Any]:
        """Replay-or-emit: (type, command) of the next journal entry.

        Replaying, the journaled command is popped and compared with ``msg`` (or with ``alt``,
        a second acceptable (type, command) — e.g. a lazy state read where the handler would
        now read eagerly); processing, ``msg`` is written.
        """
        if self.phase is Phase.PROCESSING:
            self.journal.advance(t, command_name(msg))
            self._first_new = False
            self._emit(t, msg.SerializeToString(), entry=True)
            return t, msg
        if self.phase is Phase.REPLAYING:
            self.journal.advance(t, command_name(msg))
            try:
                replayed = self.journal.pop(t, msg, alt)
            except VMError as e:
                raise self._guard(e) from None
            if self.journal.done:
                self.phase = Phase.PROCESSING
                self._first_new = True
            return replayed
        raise self._state_error(MessageType(t).name)

    def _completion_id(self) -> int:
        cid = self._completion
        self._completion += 1
        return cid

    def _map(self, nid: int | str) -> int:
        """A new handle for notification id ``nid`` (signals: ``-index``; named: the name)."""
        h = self._next_handle
        self._next_handle += 1
        self.handles[h] = nid
        return h
