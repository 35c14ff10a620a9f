"""Await trees and notification results: the vocabulary shared by the state machine and the SDK.

A *handle* is an ``int`` naming one expected notification of the current attempt (handle ``1``
is the built-in CANCEL signal). An await tree is a handle, or a :class:`FirstCompleted` /
:class:`AllCompleted` combination of trees. Notification results are ``None`` (void), ``bytes``
(a value), :class:`Failure`, ``str`` (an invocation id) or ``list[str]`` (state keys).
"""

from __future__ import annotations

#: The handle of the built-in CANCEL signal (signal index 1).
CANCEL_HANDLE = 1


class Failure:
    """A terminal failure carried by a notification or proposed for a run."""

    __slots__ = ("code", "message", "metadata")

    def __init__(self, code: int, message: str, metadata: dict[str, str] | None = None) -> None:
        self.code = code
        self.message = message
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"Failure({self.code}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failure):
            return NotImplemented
        return (self.code, self.message, self.metadata) == (
            other.code,
            other.message,
            other.metadata,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))


#: What a completed notification carries.
Result = None | bytes | Failure | str | list[str]


class FirstCompleted:
    """Resolves when any child resolves (success or failure)."""

    __slots__ = ("children",)

    def __init__(self, children: list[Tree]) -> None:
        self.children = children


class AllCompleted:
    """Resolves when every child has resolved."""

    __slots__ = ("children",)

    def __init__(self, children: list[Tree]) -> None:
        self.children = children


Tree = int | FirstCompleted | AllCompleted


def leaves(tree: Tree) -> list[int]:
    """All handles of ``tree``, depth first."""
    if isinstance(tree, int):
        return [tree]
    out: list[int] = []
    for child in tree.children:
        out.extend(leaves(child))
    return out
