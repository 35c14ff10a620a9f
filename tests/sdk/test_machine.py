"""The state machine driven in process with framed messages (no HTTP, no runtime)."""

from __future__ import annotations

import hashlib
import json
import random

from restate_lambda.protocol.messages import MessageType, pb
from tests.sdk import services
from tests.sdk.frames import (
    INVOCATION_ID,
    input_cmd,
    invoke,
    msg,
    notification,
    request,
    run_completion,
    start,
    types,
)

T = MessageType
app = services.app


def test_greet_writes_output_and_end() -> None:
    """A handler without awaits answers Output + End in one exchange."""
    status, out = invoke(app, "Svc", "greet", request(start(1), input_cmd(b'"Ada"')))
    assert status == 200
    assert types(out) == ["OUTPUT_COMMAND", "END"]
    assert out[0][1].value.content == b'"Hello, Ada!"'


def test_by_default_the_attempt_suspends_on_the_proposed_step() -> None:
    """Request-response without a checkpoint channel, like restate-sdk: propose, then suspend
    waiting for the run's completion id; the next step does not run in this attempt."""
    services.EXECUTED.clear()
    _, out = invoke(app, "Svc", "steps", request(start(1), input_cmd(b"3")))
    assert types(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION", "SUSPENSION"]
    assert list(out[2][1].waiting_completions) == [1]
    assert services.EXECUTED == ["s0"]


def test_eager_runs_opt_in_finish_all_steps_in_one_exchange() -> None:
    """With eager runs (opt-in) every proposed step value is used at once: N steps, one
    exchange, none of them durable before the response."""
    import restate_lambda as restate

    eager = restate.app([services.svc, services.obj], eager_runs=True)
    services.EXECUTED.clear()
    _, out = invoke(eager, "Svc", "steps", request(start(1), input_cmd(b"3")))
    assert types(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION"] * 3 + ["OUTPUT_COMMAND", "END"]
    assert services.EXECUTED == ["s0", "s1", "s2"]


def test_replay_uses_journaled_results_without_rerunning() -> None:
    """Replayed steps are not executed again; the next step runs and is proposed; once its
    completion is journaled too, the handler finishes with the journaled values."""
    services.EXECUTED.clear()
    journal = [
        input_cmd(b"3"),
        msg("RunCommandMessage", result_completion_id=1, name="step-0"),
        run_completion(1, b'"s0"'),
        msg("RunCommandMessage", result_completion_id=2, name="step-1"),
        run_completion(2, b'"old"'),
    ]
    _, out = invoke(app, "Svc", "steps", request(start(5), *journal))
    assert services.EXECUTED == ["s2"]
    assert types(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION", "SUSPENSION"]
    journal += [
        msg("RunCommandMessage", result_completion_id=3, name="step-2"),
        run_completion(3, b'"s2"'),
    ]
    _, out = invoke(app, "Svc", "steps", request(start(7), *journal))
    assert services.EXECUTED == ["s2"]
    assert types(out) == ["OUTPUT_COMMAND", "END"]
    assert json.loads(out[0][1].value.content) == ["s0", "old", "s2"]


def test_replay_mismatch_ends_with_error_570_naming_the_command() -> None:
    """A replayed command that differs from the journal: ErrorMessage 570 with index/type/name."""
    body = request(
        start(2), input_cmd(b"1"), msg("RunCommandMessage", result_completion_id=1, name="step-0")
    )
    _, out = invoke(app, "Svc", "other_step", body)
    assert types(out) == ["ERROR"]
    err = out[0][1]
    assert err.code == 570
    assert err.related_command_index == 1
    assert err.related_command_type == T.RUN_COMMAND
    assert err.related_command_name == "step-0"
    assert "index 1" in err.message


def test_replay_type_mismatch_is_570() -> None:
    """A different command type at the same index is a mismatch too."""
    body = request(start(2), input_cmd(b"1"), msg("SleepCommandMessage", result_completion_id=1))
    _, out = invoke(app, "Svc", "steps", body)
    assert types(out) == ["ERROR"] and out[0][1].code == 570
    assert out[0][1].related_command_type == T.SLEEP_COMMAND


def test_sleep_suspends_waiting_for_timer_and_cancel_signal() -> None:
    """Suspension lists the awaited completion id and the CANCEL signal."""
    _, out = invoke(app, "Svc", "sleeper", request(start(1), input_cmd()))
    assert types(out) == ["SLEEP_COMMAND", "SUSPENSION"]
    susp = out[1][1]
    assert list(susp.waiting_completions) == [1]
    assert list(susp.waiting_signals) == [1]


def test_cancel_signal_surfaces_as_terminal_error_409() -> None:
    """CANCEL (signal 1) raises TerminalError('cancelled', 409) at the await; compensation runs."""
    journal = [
        input_cmd(),
        msg("SleepCommandMessage", result_completion_id=1),
        notification(T.SIGNAL_NOTIFICATION, signal_id=1, void=pb().Void()),
    ]
    _, out = invoke(app, "Svc", "sleeper", request(start(3), *journal))
    assert types(out) == ["RUN_COMMAND", "PROPOSE_RUN_COMPLETION", "SUSPENSION"]
    journal += [
        msg("RunCommandMessage", result_completion_id=2, name="compensate"),
        run_completion(2, b'"undo"'),
    ]
    _, out = invoke(app, "Svc", "sleeper", request(start(5), *journal))
    assert types(out) == ["OUTPUT_COMMAND", "END"]
    failure = out[0][1].failure
    assert failure.code == 409 and failure.message == "cancelled after compensation"


def test_select_follows_journal_order() -> None:
    """The combinator's winner is decided by the order notifications were journaled."""
    sleep = notification(T.SLEEP_COMPLETION_NOTIFICATION, completion_id=1, void=pb().Void())
    signal = notification(T.SIGNAL_NOTIFICATION, signal_id=17, value=pb().Value(content=b'"hi"'))
    cmd = msg("SleepCommandMessage", result_completion_id=1)
    for order, expected in (((sleep, signal), b'"timer:None"'), ((signal, sleep), b'"signal:hi"')):
        _, out = invoke(app, "Svc", "race", request(start(4), input_cmd(), cmd, *order))
        assert types(out) == ["OUTPUT_COMMAND", "END"], out
        assert out[0][1].value.content == expected


def test_select_suspends_on_both_ids() -> None:
    """An unresolved race suspends on the timer, the awakeable's signal and CANCEL."""
    _, out = invoke(app, "Svc", "race", request(start(1), input_cmd()))
    assert types(out) == ["SLEEP_COMMAND", "SUSPENSION"]
    assert list(out[1][1].waiting_completions) == [1]
    assert sorted(out[1][1].waiting_signals) == [1, 17]


def test_random_seed_v6_from_start_message_and_v5_from_sha256() -> None:
    """V6 seeds from StartMessage.random_seed; V5 from SHA-256 of the invocation id."""
    _, out6 = invoke(app, "Svc", "rand", request(start(1, seed=7), input_cmd()), version=6)
    assert out6[0][1].value.content.decode().startswith(f'"{random.Random(7).random()}|')
    _, out5 = invoke(app, "Svc", "rand", request(start(1, seed=7), input_cmd()), version=5)
    seed = int.from_bytes(hashlib.sha256(INVOCATION_ID.to_bytes()).digest()[:8], "big")
    assert out5[0][1].value.content.decode().startswith(f'"{random.Random(seed).random()}|')


def test_eager_state_is_inlined() -> None:
    """Known state is read from the StartMessage and journaled as GetEagerState."""
    body = request(start(1, key="k", state={"n": b"41"}), input_cmd())
    _, out = invoke(app, "Obj", "incr", body)
    assert types(out) == ["GET_EAGER_STATE_COMMAND", "SET_STATE_COMMAND", "OUTPUT_COMMAND", "END"]
    assert out[2][1].value.content == b"42"


def test_lazy_state_suspends_then_replays() -> None:
    """With partial state an unknown key is read lazily: suspend, then resume with the value."""
    _, out = invoke(app, "Obj", "incr", request(start(1, key="k", partial=True), input_cmd()))
    assert types(out) == ["GET_LAZY_STATE_COMMAND", "SUSPENSION"]
    body = request(
        start(3, key="k", partial=True),
        input_cmd(),
        msg("GetLazyStateCommandMessage", key=b"n", result_completion_id=1),
        notification(
            T.GET_LAZY_STATE_COMPLETION_NOTIFICATION,
            completion_id=1,
            value=pb().Value(content=b"9"),
        ),
    )
    _, out = invoke(app, "Obj", "incr", body)
    assert types(out) == ["SET_STATE_COMMAND", "OUTPUT_COMMAND", "END"]
    assert out[1][1].value.content == b"10"


def test_state_keys_eager() -> None:
    """Complete state lists its keys without a round trip."""
    _, out = invoke(
        app, "Obj", "keys", request(start(1, key="k", state={"b": b"1", "a": b"2"}), input_cmd())
    )
    assert types(out) == ["GET_EAGER_STATE_KEYS_COMMAND", "OUTPUT_COMMAND", "END"]
    assert json.loads(out[1][1].value.content) == ["a", "b"]


def test_run_retry_policy_fails_the_step_after_max_attempts() -> None:
    """First failure ends the attempt with a delay; at max_attempts the step fails terminally."""
    _, out = invoke(app, "Svc", "flaky", request(start(1), input_cmd()))
    assert types(out) == ["RUN_COMMAND", "ERROR"]
    assert out[1][1].next_retry_delay == 50
    body = request(
        start(2, retry_count=1, duration_ms=60),
        input_cmd(),
        msg("RunCommandMessage", result_completion_id=1, name="fail"),
    )
    _, out = invoke(app, "Svc", "flaky", body)
    assert types(out) == ["PROPOSE_RUN_COMPLETION", "SUSPENSION"]
    proposed = out[0][1].failure
    assert proposed.code == 500 and "boom" in proposed.message
    body = request(
        start(3),
        input_cmd(),
        msg("RunCommandMessage", result_completion_id=1, name="fail"),
        notification(T.RUN_COMPLETION_NOTIFICATION, completion_id=1, failure=proposed),
    )
    _, out = invoke(app, "Svc", "flaky", body)
    assert types(out) == ["OUTPUT_COMMAND", "END"]
    assert out[0][1].failure.code == 500 and "boom" in out[0][1].failure.message
