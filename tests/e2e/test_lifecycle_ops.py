"""Restate 1.7's lifecycle operations against restate-server 1.7.12 and ours: restart-as-new,
purge-journal, pause and resume, named signals, and the subscriptions API.

Statuses and bodies are restate-server 1.7.12's, as observed (see the module docstring of
test_scenarios.py); where the two runtimes differ by design the test says so.
"""

from __future__ import annotations

import httpx

from tests.e2e.helpers import call, error_body, send
from tests.support.effects import Effects, poll
from tests.support.runtimes import Runtime

UNKNOWN = "inv_1fFd06NC47Ki3ktvAzLWsKVOHcOTV2VtkV"


async def test_restart_as_new(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    first = await call(ingress, "/Steps/run", {"tag": tag, "n": 2})
    assert first.status_code == 200, first.text
    old = first.headers["x-restate-id"]

    r = await admin.patch(f"/invocations/{old}/restart-as-new")
    assert r.status_code == 200, r.text
    new = r.json()["new_invocation_id"]
    assert new.startswith("inv_") and new != old and list(r.json()) == ["new_invocation_id"]
    done = await ingress.get(f"/restate/invocation/{new}/attach")
    assert done.status_code == 200, done.text
    assert done.json() == {"results": ["step-0", "step-1"], "invocation_id": new}
    assert effects.lines(tag) == ["step-0", "step-1", "step-0", "step-1"]

    # From a prefix: commands 0 (input) and 1 (step-0 with its result) are kept.
    r = await admin.patch(f"/invocations/{old}/restart-as-new?from=1")
    assert r.status_code == 200, r.text
    prefixed = r.json()["new_invocation_id"]
    done = await ingress.get(f"/restate/invocation/{prefixed}/attach")
    assert done.status_code == 200, done.text
    assert effects.count(tag, "step-0") == 2 and effects.count(tag, "step-1") == 3

    r = await admin.patch(f"/invocations/{old}/restart-as-new?from=99")
    assert r.status_code == 400, r.text
    assert r.json() == {
        "message": f"The prefix of the journal '{old}' up to 'from' (included) contains some "
        "Commands without respective Completions.",
        "restate_code": None,
    }
    r = await admin.patch(f"/invocations/{old}/restart-as-new?deployment=bogus")
    assert r.status_code == 400, r.text
    assert r.json()["message"] == "The query parameter 'deployment' is invalid. Reason: bad format"
    r = await admin.patch(f"/invocations/{UNKNOWN}/restart-as-new")
    assert r.status_code == 404, r.text
    assert r.json() == {
        "message": f"The requested invocation '{UNKNOWN}' does not exist",
        "restate_code": None,
    }
    r = await admin.patch("/invocations/nope/restart-as-new")
    assert r.status_code == 400, r.text

    running = await send(ingress, "/Cancellable/run", f"{tag}-run")
    await effects.wait_for(f"{tag}-run", "sleeping")
    r = await admin.patch(f"/invocations/{running}/restart-as-new")
    assert r.status_code == 409, r.text
    assert r.json()["message"] == f"The invocation '{running}' is still running."
    assert (await admin.patch(f"/invocations/{running}/kill")).status_code == 200


async def test_purge_journal(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    first = await call(ingress, "/Steps/run", {"tag": tag, "n": 2})
    inv = first.headers["x-restate-id"]
    for _ in range(2):  # idempotent
        r = await admin.patch(f"/invocations/{inv}/purge-journal")
        assert r.status_code == 200, r.text
        assert r.content == b""
    out = await ingress.get(f"/restate/invocation/{inv}/output")
    assert out.status_code == 200, out.text
    assert out.json() == first.json()
    r = await admin.patch(f"/invocations/{inv}/restart-as-new")
    assert r.status_code == 410, r.text
    assert r.json()["message"] == (
        f"The invocation '{inv}' cannot be restarted because the input is not available. This "
        "indicates that the journal was already purged, or not retained at all."
    )
    r = await admin.patch(f"/invocations/{UNKNOWN}/purge-journal")
    assert r.status_code == 404, r.text

    running = await send(ingress, "/Cancellable/run", f"{tag}-run")
    await effects.wait_for(f"{tag}-run", "sleeping")
    r = await admin.patch(f"/invocations/{running}/purge-journal")
    assert r.status_code == 409, r.text
    assert r.json() == {
        "message": f"The invocation '{running}' is not yet completed.",
        "restate_code": None,
    }
    assert (await admin.patch(f"/invocations/{running}/kill")).status_code == 200


async def test_pause_and_resume_answers(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    """The HTTP answers of pause and resume (restate-server keeps a suspended invocation
    suspended when paused; ours parks it as paused until resumed: both answer alike).

    The first pause may find the attempt still running (over HTTP/2 the stream stays open
    while the handler sleeps; the TypeScript SDK keeps it open until the runtime ends it): 202,
    the pause taking effect as the attempt ends, which takes a moment; once it has, pause
    answers 200."""
    inv = await send(ingress, "/Cancellable/run", tag)
    await effects.wait_for(tag, "sleeping")

    async def pause() -> httpx.Response:
        return await admin.patch(f"/invocations/{inv}/pause")

    r = await pause()
    assert r.status_code in (200, 202), r.text
    if r.status_code == 202:
        r = await poll(pause, lambda r: r.status_code != 202, what="the pause took effect")
    for op in ("pause", "resume", "resume"):  # already paused: 200; resumed twice: 200
        r = await admin.patch(f"/invocations/{inv}/{op}")
        assert r.status_code == 200, (op, r.status_code, r.text)
        assert r.content == b""

    # Paused (or suspended) and pinned: it may move to another deployment as it resumes (a
    # running one answers 409, see tests/lifecycle: restate-server's attempt here is too
    # short-lived to catch running from outside).
    r = await pause()
    assert r.status_code in (200, 202), r.text
    if r.status_code == 202:
        await poll(pause, lambda r: r.status_code != 202, what="the pause took effect")
    runs = effects.count(tag, "sleeping")
    r = await admin.patch(f"/invocations/{inv}/resume?deployment=latest")
    assert r.status_code == 200, r.text
    await effects.wait_for(tag, "sleeping", at_least=runs + 1)  # it ran again, from its journal
    assert (await admin.patch(f"/invocations/{inv}/kill")).status_code == 200
    r = await admin.patch(f"/invocations/{inv}/pause")
    assert r.status_code == 409, r.text
    assert r.json()["message"] == f"The invocation '{inv}' is not running, cannot be paused."
    r = await admin.patch(f"/invocations/{inv}/resume")
    assert r.status_code == 409, r.text
    assert r.json()["message"] == f"The invocation '{inv}' is completed, cannot be resumed."
    for op in ("pause", "resume"):
        r = await admin.patch(f"/invocations/{UNKNOWN}/{op}")
        assert r.status_code == 404, r.text


async def test_resume_of_a_scheduled_invocation(
    ingress: httpx.AsyncClient, admin: httpx.AsyncClient, tag: str
) -> None:
    """Resume before a delayed invocation started: 425, with restate-server's message."""
    r = await ingress.post("/Cancellable/run/send?delay=1h", json=tag)
    assert r.status_code == 202, r.text
    inv = r.json()["invocationId"]
    r = await admin.patch(f"/invocations/{inv}/resume")
    assert r.status_code == 425, r.text
    assert r.json()["message"] == (
        f"The invocation '{inv}' is either inboxed or scheduled, cannot be resumed."
    )
    assert (await admin.patch(f"/invocations/{inv}/kill")).status_code == 200


async def test_named_signal_delivered_once(
    ingress: httpx.AsyncClient, effects: Effects, tag: str
) -> None:
    waiting = await send(ingress, "/Signals/wait_signal", tag)
    await effects.wait_for(tag, "waiting")
    r = await call(ingress, "/Signals/send_signal", {"id": waiting, "value": "hello"})
    assert r.status_code == 200, r.text
    done = await ingress.get(f"/restate/invocation/{waiting}/attach")
    assert done.status_code == 200, done.text
    assert done.json() == "got hello"
    r = await call(ingress, "/Signals/send_signal", {"id": waiting, "value": "again"})
    assert r.status_code == 200, r.text
    again = await ingress.get(f"/restate/invocation/{waiting}/output")
    assert again.json() == "got hello"

    rejected = await send(ingress, "/Signals/wait_signal", f"{tag}-r")
    await effects.wait_for(f"{tag}-r", "waiting")
    r = await call(ingress, "/Signals/reject_signal", {"id": rejected, "message": "no"})
    assert r.status_code == 200, r.text
    done = await ingress.get(f"/restate/invocation/{rejected}/attach")
    assert done.status_code == 418, done.text
    assert error_body(done)["message"] == "no"


async def test_subscriptions_api(admin: httpx.AsyncClient, runtime: Runtime) -> None:
    """Restate's /subscriptions: shapes of a Kafka subscription, errors for bad sinks and ids.
    restate-server needs the Kafka cluster registered first (ours takes events from Lambda
    event source mappings and has no cluster registry)."""
    if runtime.name == "restate-server":
        r = await admin.post(
            "/kafka-clusters",
            json={"name": "cluster", "properties": {"bootstrap.servers": "127.0.0.1:9"}},
        )
        assert r.status_code in (201, 409), r.text
    r = await admin.get("/subscriptions")
    assert r.status_code == 200 and isinstance(r.json()["subscriptions"], list), r.text

    body = {"source": "kafka://cluster/orders", "sink": "service://Counter/add"}
    options = {"auto.offset.reset": "earliest"}
    r = await admin.post("/subscriptions", json={**body, "options": options})
    assert r.status_code == 201, r.text
    sub = r.json()
    sub_id = sub["id"]
    assert sub_id.startswith("sub_1") and len(sub_id) == 27
    assert sub == {
        "id": sub_id,
        **body,
        "options": {"group.id": sub_id, "auto.offset.reset": "earliest", "client.id": "restate"},
    }
    assert (await admin.get(f"/subscriptions/{sub_id}")).json() == sub
    assert sub in (await admin.get("/subscriptions")).json()["subscriptions"]
    r = await admin.delete(f"/subscriptions/{sub_id}")
    assert r.status_code == 202, r.text
    r = await admin.delete(f"/subscriptions/{sub_id}")
    assert r.status_code == 404, r.text
    assert r.json() == {
        "message": f"not found in the schema registry: subscription with id '{sub_id}'",
        "restate_code": None,
    }

    r = await admin.post("/subscriptions", json={**body, "sink": "nope"})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "message": "[META0009] invalid sink URI 'nope': must have a scheme segment, with "
        "supported schemes: [service].",
        "restate_code": "META0009",
    }
    r = await admin.post("/subscriptions", json={**body, "sink": "service://Nope/x"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        "[META0009] invalid sink URI 'service://Nope/x': cannot find service/handler specified "
        "in the sink URI."
    )
    r = await admin.post("/subscriptions", json={"source": "kafka://cluster/orders"})
    assert r.status_code == 422, r.text
    r = await admin.get("/subscriptions/nope")
    assert r.status_code == 400, r.text


async def test_schedule_fires_in_the_dev_server(
    admin: httpx.AsyncClient, runtime: Runtime, tag: str
) -> None:
    """Ours only (restate-server has no schedules): a schedule every second fires through the
    dev server's timer loop; pausing stops it."""
    if runtime.name == "restate-server":
        return
    body = {"id": f"e2e-{tag}", "cron": "* * * * * *", "target": "Greeter/greet", "body": tag}
    r = await admin.post("/schedules", json=body)
    assert r.status_code == 201, r.text

    async def fired() -> int:
        shown = (await admin.get(f"/schedules/e2e-{tag}")).json()
        return int(shown["fired"])

    await poll(fired, lambda n: n >= 2, timeout=15, what="two ticks")
    r = await admin.patch(f"/schedules/e2e-{tag}/pause")
    assert r.status_code == 200 and r.json()["paused"] is True, r.text
    rows = (await admin.get("/invocations?all=true&limit=1000")).json()["invocations"]
    assert sum(1 for row in rows if row["target"] == "Greeter/greet") >= 2
    assert (await admin.delete(f"/schedules/e2e-{tag}")).status_code == 202
