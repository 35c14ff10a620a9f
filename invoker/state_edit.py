"""Replace the K/V state of a virtual object or workflow instance from the admin API.

``POST /services/{service}/state`` (what ``restate kv clear`` and ``kv edit`` send). Restate
enqueues the change behind the key's running invocations; here it applies at once, and only
while no invocation can be writing that state:

* a virtual object key must be unlocked with an empty inbox (its lock record is checked in the
  same atomic batch);
* a workflow's ``run`` invocation must be absent or completed (its record is checked likewise).

Otherwise the request is refused with 409, as it is when ``version`` (restate's hash of the
current state, :func:`state_version`) no longer matches. One commit: the state record's
compare-and-set (the fence) plus those checks.
"""

from __future__ import annotations

import base64
import hashlib

from backends.api import Check, ConflictError, Delete, Put, WriteOp
from invoker import keys
from invoker import records as rec
from invoker.api import BadRequestError, ConflictingRequestError, NotFoundError
from invoker.commit import Committer
from invoker.ids import workflow_invocation_id
from invoker.registry import Registry
from invoker.store import Store, decode_invocation, decode_lock


def state_version(state: dict[str, bytes]) -> str:
    """Restate's version of a state (``StateMutationVersion::from_user_state``): SHA-256 over
    the entries sorted by key, each ``index (u64 BE) 0x01 key 0x02 value 0x03``, in unpadded
    URL-safe base64."""
    digest = hashlib.sha256()
    for i, (k, v) in enumerate(sorted((k.encode(), v) for k, v in state.items())):
        digest.update(i.to_bytes(8, "big") + b"\x01" + k + b"\x02" + v + b"\x03")
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


async def modify_state(
    store: Store,
    registry: Registry,
    service: str,
    key: str,
    new_state: dict[str, bytes],
    version: str | None,
) -> None:
    """Replace the state of ``service``/``key`` with ``new_state``.

    Raises:
        NotFoundError: unknown service.
        BadRequestError: a service without state (not a virtual object or workflow).
        ConflictingRequestError: ``version`` is stale, or an invocation may write the state now.
    """
    await registry.refresh_if_stale()
    svc = registry.service(service)
    if svc is None:
        raise NotFoundError(f"service '{service}' not found")
    if svc.kind not in ("virtual_object", "workflow"):
        raise BadRequestError(f"service '{service}' is not a virtual object or workflow")
    backend = store.backend
    opk = keys.obj(service, key)
    current, state_ver = await store.state(service, key)
    if version is not None and version != state_version(current):
        raise ConflictingRequestError(
            f"the state of {service}/{key} changed (version {state_version(current)}, "
            f"expected {version})"
        )
    ops: list[WriteOp] = []
    if new_state:
        ops.append(Put(opk, keys.STATE, rec.encode(rec.StateRecord(new_state)), expect=state_ver))
    elif state_ver:
        ops.append(Delete(opk, keys.STATE, expect=state_ver))
    else:
        return  # nothing stored, nothing to store
    if svc.kind == "virtual_object":
        lock = await backend.get(opk, keys.LOCK)
        if lock is not None:
            record = decode_lock(lock.value)
            if record.holder is not None or record.head < record.tail:
                raise ConflictingRequestError(
                    f"{service}/{key} is locked by invocation {record.holder or '(queued)'}: "
                    "change its state once its invocations completed"
                )
        ops.append(Check(opk, keys.LOCK, expect=lock.version if lock is not None else 0))
    else:
        run_id = workflow_invocation_id(service, key)
        meta = await backend.get(keys.inv(run_id), keys.META)
        if meta is not None and decode_invocation(meta.value).status != rec.Status.COMPLETED:
            raise ConflictingRequestError(
                f"workflow {service}/{key} is running ({run_id}): change its state once "
                "it completed"
            )
        ops.append(Check(keys.inv(run_id), keys.META, expect=meta.version if meta else 0))
    try:
        await Committer(backend).write(ops)
    except ConflictError as exc:
        raise ConflictingRequestError(
            f"the state of {service}/{key} changed concurrently; read it again and retry"
        ) from exc
