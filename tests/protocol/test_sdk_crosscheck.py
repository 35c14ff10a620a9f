"""Wire compatibility: drive the official restate-sdk (1.2) with frames we encode and
decode what it answers."""

from __future__ import annotations

from typing import Any

import pytest

from restate_lambda.protocol import (
    JOURNAL_MISMATCH,
    AwakeableId,
    InvocationId,
    MessageType,
    decode_all,
    encode,
    encode_awakeable_id,
    invocation_content_type,
    parse_invocation_content_type,
    pb,
)
from tests.protocol.sdk_app import asgi_call

P = pb()
INV = InvocationId.parse("inv_1fBuS9KMPNrt0zQBGdilypucn1EeT7AO5j")


def _start(known_entries: int, **kw: Any) -> Any:
    return P.StartMessage(
        id=INV.to_bytes(), debug_id=str(INV), known_entries=known_entries, random_seed=1234, **kw
    )


def _input(value: bytes | None = None) -> Any:
    if value is None:
        return P.InputCommandMessage()
    return P.InputCommandMessage(value=P.Value(content=value))


async def invoke(
    service: str, handler: str, journal: list[Any], version: int = 6, key: str = "", **start: Any
) -> list[tuple[MessageType, Any]]:
    body = encode(_start(len(journal), key=key, **start)) + b"".join(encode(m) for m in journal)
    ct = invocation_content_type(version)
    status, headers, out = await asgi_call(
        "POST", f"/invoke/{service}/{handler}", {"content-type": ct, "accept": ct}, body
    )
    assert status == 200, out
    assert parse_invocation_content_type(headers["content-type"]) == version
    return [(MessageType(f.type), f.decode()) for f in decode_all(out)]


@pytest.mark.parametrize("version", [5, 6])
async def test_greet_output_and_end(version: int) -> None:
    answer = await invoke("Greeter", "greet", [_input(b'"World"')], version=version)
    assert [t for t, _ in answer] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    assert answer[0][1].value.content == b'"Hello World!"'


async def test_awakeable_id_matches_ours() -> None:
    answer = await invoke("Greeter", "awakeable", [_input()])
    assert answer[0][0] == MessageType.OUTPUT_COMMAND
    sdk_id = answer[0][1].value.content.decode().strip('"')
    assert sdk_id == encode_awakeable_id(INV.to_bytes(), 17)
    assert AwakeableId.parse(sdk_id) == AwakeableId(INV, 17)


async def test_sleep_suspends_then_resumes() -> None:
    answer = await invoke("Greeter", "nap", [_input()])
    types = [t for t, _ in answer]
    assert types == [MessageType.SLEEP_COMMAND, MessageType.SUSPENSION]
    sleep, suspension = answer[0][1], answer[1][1]
    assert sleep.wake_up_time > 1_700_000_000_000
    assert list(suspension.waiting_completions) == [sleep.result_completion_id]
    # replay with the completion: the handler finishes
    done = P.SleepCompletionNotificationMessage(
        completion_id=sleep.result_completion_id, void=P.Void()
    )
    answer = await invoke("Greeter", "nap", [_input(), sleep, done])
    assert [t for t, _ in answer] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    assert answer[0][1].value.content == b'"rested"'


async def test_run_proposal_then_completion() -> None:
    answer = await invoke("Greeter", "step", [_input()])
    types = [t for t, _ in answer]
    assert types[:2] == [MessageType.RUN_COMMAND, MessageType.PROPOSE_RUN_COMPLETION]
    run, proposal = answer[0][1], answer[1][1]
    assert run.name == "step"
    assert proposal.result_completion_id == run.result_completion_id
    assert proposal.value == b'"done"'
    assert types[2] == MessageType.SUSPENSION
    completion = P.RunCompletionNotificationMessage(
        completion_id=run.result_completion_id, value=P.Value(content=proposal.value)
    )
    answer = await invoke("Greeter", "step", [_input(), run, completion])
    assert [t for t, _ in answer] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    assert answer[0][1].value.content == b'"done"'


async def test_call_and_its_two_notifications() -> None:
    answer = await invoke("Greeter", "relay", [_input(b'"Bob"')])
    assert [t for t, _ in answer] == [MessageType.CALL_COMMAND, MessageType.SUSPENSION]
    call = answer[0][1]
    assert (call.service_name, call.handler_name, call.parameter) == ("Greeter", "greet", b'"Bob"')
    assert call.invocation_id_notification_idx != call.result_completion_id
    callee = InvocationId.derive("callee")
    journal = [
        _input(b'"Bob"'),
        call,
        P.CallInvocationIdCompletionNotificationMessage(
            completion_id=call.invocation_id_notification_idx, invocation_id=str(callee)
        ),
        P.CallCompletionNotificationMessage(
            completion_id=call.result_completion_id, value=P.Value(content=b'"Hello Bob!"')
        ),
    ]
    answer = await invoke("Greeter", "relay", journal)
    assert [t for t, _ in answer] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    assert answer[0][1].value.content == b'"Hello Bob!"'


@pytest.mark.parametrize("version", [5, 6])
async def test_eager_state(version: int) -> None:
    answer = await invoke(
        "Counter",
        "add",
        [_input(b"1")],
        version=version,
        key="k",
        state_map=[P.StartMessage.StateEntry(key=b"count", value=b"41")],
        partial_state=False,
    )
    assert [t for t, _ in answer] == [
        MessageType.GET_EAGER_STATE_COMMAND,
        MessageType.SET_STATE_COMMAND,
        MessageType.OUTPUT_COMMAND,
        MessageType.END,
    ]
    get, put, out = answer[0][1], answer[1][1], answer[2][1]
    assert (get.key, get.value.content) == (b"count", b"41")
    assert (put.key, put.value.content) == (b"count", b"42")
    assert out.value.content == b"42"


async def test_eager_state_missing_key_is_void() -> None:
    answer = await invoke("Counter", "get", [_input()], key="k", partial_state=False)
    get = answer[0][1]
    assert answer[0][0] == MessageType.GET_EAGER_STATE_COMMAND
    assert get.WhichOneof("result") == "void"
    assert answer[1][1].value.content == b"0"


async def test_lazy_state_with_partial_state() -> None:
    answer = await invoke("Counter", "get", [_input()], key="k", partial_state=True)
    assert [t for t, _ in answer] == [MessageType.GET_LAZY_STATE_COMMAND, MessageType.SUSPENSION]
    get = answer[0][1]
    done = P.GetLazyStateCompletionNotificationMessage(
        completion_id=get.result_completion_id, value=P.Value(content=b"7")
    )
    answer = await invoke("Counter", "get", [_input(), get, done], key="k", partial_state=True)
    assert answer[0][1].value.content == b"7"


async def test_terminal_error_is_output_failure() -> None:
    answer = await invoke("Greeter", "refuse", [_input()])
    assert [t for t, _ in answer] == [MessageType.OUTPUT_COMMAND, MessageType.END]
    failure = answer[0][1].failure
    assert (failure.code, failure.message) == (418, "nope")


async def test_retryable_error_is_error_message() -> None:
    answer = await invoke("Greeter", "boom", [_input()])
    assert answer[-1][0] == MessageType.ERROR
    err = answer[-1][1]
    assert err.code == 500 and "kaput" in err.message


async def test_journal_mismatch_is_reported_as_570() -> None:
    wrong = P.SleepCommandMessage(wake_up_time=1, result_completion_id=1)
    answer = await invoke("Greeter", "step", [_input(), wrong])
    assert answer[-1][0] == MessageType.ERROR
    assert answer[-1][1].code == JOURNAL_MISMATCH
