"""``handlers_follow``: blocks that overlap in any order leave nothing patched behind."""

from __future__ import annotations

import restate.server_context as server_context
import restate.vm as vm

from restate_lambda.clock import ManualClock, SystemClock, handler_clock
from restate_lambda.testing.sdk_time import handlers_follow


def test_overlapping_blocks_closed_out_of_order_restore_everything() -> None:
    sleep, send, time_module = vm.VMWrapper.sys_sleep, vm.VMWrapper.sys_send, server_context.time
    a, b = ManualClock(5_000_000), ManualClock(9_000_000)
    first = handlers_follow(a)
    second = handlers_follow(b)
    first.__enter__()
    assert handler_clock() is a and server_context.time.time() == 5_000
    second.__enter__()
    assert handler_clock() is b and server_context.time.time() == 9_000
    first.__exit__(None, None, None)  # the older block closes first
    assert handler_clock() is b and server_context.time.time() == 9_000
    assert vm.VMWrapper.sys_sleep is not sleep  # still followed by the open block
    second.__exit__(None, None, None)
    assert isinstance(handler_clock(), SystemClock)
    assert vm.VMWrapper.sys_sleep is sleep and vm.VMWrapper.sys_send is send
    assert server_context.time is time_module


def test_nested_blocks_restore_the_outer_clock() -> None:
    a, b = ManualClock(1_000), ManualClock(2_000)
    with handlers_follow(a):
        with handlers_follow(b):
            assert handler_clock() is b
        assert handler_clock() is a
        assert server_context.time.time() == 1
    assert isinstance(handler_clock(), SystemClock)
