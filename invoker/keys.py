"""Where each record lives in the item store.

Partition ``inv/{id}`` holds everything one invocation owns, so a resume reads it with one
query:

* ``j/{first_index:010d}``  a journal segment (entries that overflowed the record's tail)
* ``meta``                  the :class:`~invoker.records.Invocation` record (CAS; due = next run),
  with the newest journal entries in its ``tail`` (see :func:`invoker.journal.append`)
* ``n/{kind}/{id}``         a notification waiting to enter the journal (create-if-absent)
* ``o/{version:010d}``      the outbox of the commit that wrote ``meta`` at ``version``
* ``w/{waiter}/{cid}``      another invocation attached to this one's result

Partition ``obj/{service}/{key}`` holds a virtual object's or workflow's ``state``, ``lock``,
inbox ``q/{seq:012d}`` and promises ``p/{name}``. Partitions ``deployments`` and ``services``
hold the registry; ``outbox-dead`` lists dead outbox items. Sleeps are not items: the invocation
record lists them and is due at the earliest.

Partition ``sched/{id}`` holds one cron schedule's ``meta`` (due at its next tick); partition
``subscriptions`` the event subscriptions (``sub/{id}``). An invocation created by a schedule
tick or an event starts as the outbox item ``o/0000000000`` (:data:`CREATION_OUTBOX`) of its
own partition, written before its record exists by the commit that fired it.
"""

from __future__ import annotations

META = "meta"
JOURNAL_PREFIX = "j/"
NOTIFY_PREFIX = "n/"
OUTBOX_PREFIX = "o/"
WAITER_PREFIX = "w/"
STATE = "state"
LOCK = "lock"
INBOX_PREFIX = "q/"
PROMISE_PREFIX = "p/"
DEPLOYMENTS = "deployments"
SERVICES = "services"
INV_PREFIX = "inv/"
#: The registry's change counter (``registry`` / ``generation``): its version counts changes.
REGISTRY = "registry"
REGISTRY_GENERATION = "generation"
#: Markers of dead outbox items (sort key ``{pk}|{sk}`` of the item), for the admin API.
DEAD_OUTBOX = "outbox-dead"


def inv(invocation_id: str) -> str:
    """Partition of one invocation."""
    return f"inv/{invocation_id}"


def obj(service: str, key: str) -> str:
    """Partition of one virtual object / workflow instance."""
    return f"obj/{service}/{key}"


def journal(first_index: int) -> str:
    """Sort key of a journal segment starting at ``first_index``."""
    return f"j/{first_index:010d}"


def completion_notification(completion_id: int) -> str:
    """Sort key of a pending completion notification."""
    return f"n/c/{completion_id:010d}"


def signal_notification(idx: int) -> str:
    """Sort key of a pending signal notification (by index)."""
    return f"n/s/{idx:010d}"


def named_signal_notification(name: str, unique: str) -> str:
    """Sort key of a pending named-signal notification."""
    return f"n/n/{name}/{unique}"


def outbox(version: int) -> str:
    """Sort key of the outbox item of the commit that wrote ``meta`` at ``version``."""
    return f"o/{version:010d}"


def waiter(waiter_id: str, completion_id: int) -> str:
    """Sort key of an attach waiter."""
    return f"w/{waiter_id}/{completion_id:010d}"


def inbox(seq: int) -> str:
    """Sort key of a virtual object inbox entry."""
    return f"q/{seq:012d}"


def promise(name: str) -> str:
    """Sort key of a workflow promise."""
    return f"p/{name}"


#: Partitions of cron schedules (``sched/{id}`` / ``meta``).
SCHEDULE_PREFIX = "sched/"
#: The partition listing event subscriptions (sort keys ``sub/{id}``).
SUBSCRIPTIONS = "subscriptions"
SUBSCRIPTION_PREFIX = "sub/"
#: Sort key of the outbox item that creates an invocation from outside any invocation (a
#: schedule tick, an event): version 0, which no commit of the invocation itself ever uses.
CREATION_OUTBOX = "o/0000000000"


def schedule(schedule_id: str) -> str:
    """Partition of one cron schedule."""
    return f"sched/{schedule_id}"


def subscription(subscription_id: str) -> str:
    """Sort key of one event subscription in :data:`SUBSCRIPTIONS`."""
    return f"sub/{subscription_id}"
