"""The conformance suite: every rule of ``backends/api.py``, run against every backend."""

from __future__ import annotations

import asyncio

import pytest

from backends.api import (
    Backend,
    Check,
    ConflictError,
    Delete,
    Item,
    Put,
    ValueTooLargeError,
    WriteOp,
)


def put(
    sk: str, value: bytes = b"v", *, pk: str = "p", expect: int | None = 0, due: int | None = None
) -> Put:
    """A Put into partition ``pk`` (create-if-absent by default)."""
    return Put(pk, sk, value, expect=expect, due_ms=due)


async def version(backend: Backend, pk: str, sk: str) -> int:
    """The stored version of an item, 0 when absent."""
    item = await backend.get(pk, sk)
    return 0 if item is None else item.version


def sks(items: list[Item]) -> list[str]:
    """The sort keys of ``items``, in order."""
    return [i.sk for i in items]


class TestCreateIfAbsent:
    async def test_creates_at_version_1(self, backend: Backend) -> None:
        """expect=0 on a missing item stores it with version 1 and no due time."""
        await backend.write([put("a", b"hello")])
        assert Item("p", "a", b"hello", 1, None) == await backend.get("p", "a")

    async def test_existing_item_conflicts(self, backend: Backend) -> None:
        """expect=0 on an existing item raises ConflictError(index=0) and changes nothing."""
        await backend.write([put("a", b"first")])
        with pytest.raises(ConflictError) as info:
            await backend.write([put("a", b"second")])
        assert 0 == info.value.index
        assert Item("p", "a", b"first", 1) == await backend.get("p", "a")

    async def test_missing_item_reads_none(self, backend: Backend) -> None:
        """get of an item never written is None."""
        assert await backend.get("p", "nope") is None


class TestCompareAndSet:
    async def test_success_bumps_version(self, backend: Backend) -> None:
        """A put expecting the current version stores the value at version + 1."""
        await backend.write([put("a", b"1")])
        await backend.write([put("a", b"2", expect=1)])
        await backend.write([put("a", b"3", expect=2)])
        assert Item("p", "a", b"3", 3) == await backend.get("p", "a")

    async def test_stale_version_conflicts(self, backend: Backend) -> None:
        """A put expecting an older version loses and leaves the item alone."""
        await backend.write([put("a", b"1")])
        await backend.write([put("a", b"2", expect=1)])
        with pytest.raises(ConflictError) as info:
            await backend.write([put("a", b"stale", expect=1)])
        assert 0 == info.value.index
        assert Item("p", "a", b"2", 2) == await backend.get("p", "a")

    async def test_future_version_conflicts(self, backend: Backend) -> None:
        """A put expecting a version the item has not reached loses."""
        await backend.write([put("a")])
        with pytest.raises(ConflictError):
            await backend.write([put("a", expect=5)])
        assert 1 == await version(backend, "p", "a")

    async def test_expect_on_missing_item_conflicts(self, backend: Backend) -> None:
        """expect=n > 0 on an item that does not exist raises ConflictError and creates nothing."""
        with pytest.raises(ConflictError) as info:
            await backend.write([put("a", expect=1)])
        assert 0 == info.value.index
        assert await backend.get("p", "a") is None

    async def test_unconditional_put_creates_then_bumps(self, backend: Backend) -> None:
        """expect=None creates at version 1 and replaces at version + 1."""
        await backend.write([put("a", b"x", expect=None)])
        await backend.write([put("a", b"y", expect=None)])
        assert Item("p", "a", b"y", 2) == await backend.get("p", "a")


class TestDelete:
    async def test_without_expect_removes(self, backend: Backend) -> None:
        """Delete(expect=None) removes an existing item."""
        await backend.write([put("a")])
        await backend.write([Delete("p", "a")])
        assert await backend.get("p", "a") is None

    async def test_without_expect_on_missing_is_noop(self, backend: Backend) -> None:
        """Delete(expect=None) of a missing item succeeds and writes nothing."""
        await backend.write([Delete("p", "a")])
        assert await backend.get("p", "a") is None

    async def test_with_right_version_removes(self, backend: Backend) -> None:
        """Delete expecting the current version removes the item."""
        await backend.write([put("a")])
        await backend.write([put("a", expect=1)])
        await backend.write([Delete("p", "a", expect=2)])
        assert await backend.get("p", "a") is None

    async def test_with_wrong_version_conflicts(self, backend: Backend) -> None:
        """Delete expecting another version raises ConflictError and keeps the item."""
        await backend.write([put("a")])
        with pytest.raises(ConflictError) as info:
            await backend.write([Delete("p", "a", expect=2)])
        assert 0 == info.value.index
        assert 1 == await version(backend, "p", "a")

    async def test_with_expect_on_missing_conflicts(self, backend: Backend) -> None:
        """Delete(expect=n) of a missing item raises ConflictError ('fire once' claims)."""
        with pytest.raises(ConflictError):
            await backend.write([Delete("p", "a", expect=1)])

    async def test_expect_absent(self, backend: Backend) -> None:
        """Delete(expect=0) succeeds on a missing item and conflicts on an existing one."""
        await backend.write([Delete("p", "a", expect=0)])
        await backend.write([put("b")])
        with pytest.raises(ConflictError):
            await backend.write([Delete("p", "b", expect=0)])
        assert 1 == await version(backend, "p", "b")

    async def test_recreate_after_delete_starts_at_1(self, backend: Backend) -> None:
        """An item created after a delete is new: version 1, create-if-absent succeeds."""
        await backend.write([put("a")])
        await backend.write([put("a", expect=1)])
        await backend.write([Delete("p", "a")])
        await backend.write([put("a", b"again")])
        assert Item("p", "a", b"again", 1) == await backend.get("p", "a")

    async def test_concurrent_claims_one_wins(self, backend: Backend) -> None:
        """Of two deletes of the same version ('fire once'), exactly one succeeds."""
        await backend.write([put("t")])
        results = await asyncio.gather(
            backend.write([Delete("p", "t", expect=1)]),
            backend.write([Delete("p", "t", expect=1)]),
            return_exceptions=True,
        )
        assert 1 == sum(isinstance(r, ConflictError) for r in results)
        assert 1 == sum(r is None for r in results)


class TestDeleteItems:
    async def test_removes_present_and_ignores_absent(self, backend: Backend) -> None:
        """delete_items removes every named item and ignores missing ones."""
        for name in ("a", "b", "c"):
            await backend.write([put(name)])
        await backend.delete_items([("p", "a"), ("p", "c"), ("p", "missing"), ("q", "x")])
        assert ["b"] == [i.sk for i in await backend.query("p")]

    async def test_many_items_and_due_cleared(self, backend: Backend) -> None:
        """delete_items handles more items than one request carries and clears the due index."""
        names = [f"k{n:03d}" for n in range(60)]
        for start in range(0, len(names), 20):
            await backend.write([Put("p", n, b"v", due_ms=5) for n in names[start : start + 20]])
        await backend.delete_items([("p", n) for n in names])
        assert [] == await backend.query("p")
        assert [] == await backend.due(10, 100)

    async def test_empty(self, backend: Backend) -> None:
        """delete_items of nothing is a no-op."""
        await backend.delete_items([])


class TestCheck:
    async def test_passing_check_lets_batch_apply(self, backend: Backend) -> None:
        """A Check on the current version fences a batch; the checked item is unchanged."""
        await backend.write([put("fence")])
        await backend.write([Check("p", "fence", 1), put("x", expect=None)])
        assert 1 == await version(backend, "p", "fence")
        assert 1 == await version(backend, "p", "x")

    async def test_failing_check_blocks_batch(self, backend: Backend) -> None:
        """A Check on a stale version fails the batch with its index."""
        await backend.write([put("fence")])
        await backend.write([put("fence", expect=1)])
        with pytest.raises(ConflictError) as info:
            await backend.write([put("x", expect=None), Check("p", "fence", 1)])
        assert 1 == info.value.index
        assert await backend.get("p", "x") is None

    async def test_check_absent(self, backend: Backend) -> None:
        """Check(expect=0) passes while the item is missing and fails once it exists."""
        await backend.write([Check("p", "a", 0), put("b")])
        await backend.write([put("a")])
        with pytest.raises(ConflictError):
            await backend.write([Check("p", "a", 0), put("c")])
        assert await backend.get("p", "c") is None

    async def test_check_on_missing_item_with_version_fails(self, backend: Backend) -> None:
        """Check(expect=n > 0) fails on a missing item."""
        with pytest.raises(ConflictError):
            await backend.write([Check("p", "a", 1)])


class TestAtomicity:
    @pytest.mark.parametrize("failing", [0, 1, 3])
    async def test_failing_op_applies_nothing(self, backend: Backend, failing: int) -> None:
        """A batch with one failing condition applies none of its operations; index names it."""
        await backend.write([put("existing", b"old"), put("gone", due=5), put("kept")])
        ops: list[WriteOp] = [
            put("new1", b"n"),
            put("existing", b"new", expect=1),
            Delete("p", "gone", expect=1),
            put("new2", b"n", pk="other", due=1),
        ]
        bad: dict[int, WriteOp] = {
            0: put("kept", b"new"),  # exists
            1: put("existing", b"new", expect=7),  # stale
            3: Check("p", "missing", 1),  # missing
        }
        ops[failing] = bad[failing]
        with pytest.raises(ConflictError) as info:
            await backend.write(ops)
        assert failing == info.value.index
        assert Item("p", "existing", b"old", 1) == await backend.get("p", "existing")
        assert Item("p", "gone", b"v", 1, 5) == await backend.get("p", "gone")
        assert await backend.get("p", "new1") is None
        assert Item("p", "kept", b"v", 1) == await backend.get("p", "kept")
        assert await backend.get("other", "new2") is None
        assert ["gone"] == sks(await backend.due(100, 10))

    async def test_first_failing_op_is_named(self, backend: Backend) -> None:
        """With several failing conditions, ``index`` names the first."""
        with pytest.raises(ConflictError) as info:
            await backend.write([put("a", expect=None), Check("p", "x", 3), Check("p", "y", 4)])
        assert 1 == info.value.index

    async def test_whole_batch_applies(self, backend: Backend) -> None:
        """A successful multi-op batch applies every operation."""
        await backend.write([put("a"), put("b")])
        await backend.write([put("a", b"A", expect=1), Delete("p", "b", expect=1), put("c")])
        assert ["a", "c"] == sks(await backend.query("p"))
        assert 2 == await version(backend, "p", "a")

    async def test_same_item_twice_is_value_error(self, backend: Backend) -> None:
        """A batch naming one (pk, sk) twice raises ValueError and applies nothing."""
        with pytest.raises(ValueError):
            await backend.write([put("a"), put("b"), Delete("p", "a")])
        assert [] == await backend.query("p")

    async def test_same_sk_in_other_partition_is_fine(self, backend: Backend) -> None:
        """The same sort key in two partitions is two items."""
        await backend.write([put("a", pk="p1"), put("a", pk="p2")])
        assert 1 == await version(backend, "p2", "a")

    async def test_empty_batch_is_value_error(self, backend: Backend) -> None:
        """An empty batch raises ValueError."""
        with pytest.raises(ValueError):
            await backend.write([])

    async def test_oversized_batch_is_value_error(self, backend: Backend) -> None:
        """A batch over ``max_batch_ops`` raises ValueError."""
        ops = [put(f"k{i}") for i in range(backend.max_batch_ops + 1)]
        with pytest.raises(ValueError):
            await backend.write(ops)
        assert [] == await backend.query("p", limit=1)

    async def test_max_batch_applies(self, backend: Backend) -> None:
        """A batch of exactly ``max_batch_ops`` operations applies."""
        n = min(backend.max_batch_ops, 2_000)
        await backend.write([put(f"k{i:05d}") for i in range(n)])
        assert n == len(await backend.query("p"))

    async def test_value_too_large(self, backend: Backend) -> None:
        """A value over ``max_value_bytes`` raises ValueTooLargeError and stores nothing."""
        with pytest.raises(ValueTooLargeError):
            await backend.write([put("big", bytes(backend.max_value_bytes + 1))])
        assert await backend.get("p", "big") is None

    async def test_large_value_round_trips(self, backend: Backend) -> None:
        """A multi-megabyte value (within the limit) comes back intact."""
        size = min(backend.max_value_bytes, 3 * 1024 * 1024 + 7)
        value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        await backend.write([put("big", value)])
        item = await backend.get("p", "big")
        assert item is not None and value == item.value


class TestQuery:
    @pytest.fixture
    async def filled(self, backend: Backend) -> Backend:
        await backend.write([put(sk) for sk in ["b/2", "a", "b/1", "c", "b/10", "b", "ba"]])
        await backend.write([put("b/3", pk="other"), put("a", pk="p2")])
        return backend

    async def test_all_in_sort_key_order(self, filled: Backend) -> None:
        """Without a prefix, the whole partition comes back in sort-key order."""
        assert ["a", "b", "b/1", "b/10", "b/2", "ba", "c"] == sks(await filled.query("p"))

    async def test_items_are_complete(self, filled: Backend) -> None:
        """Query returns whole items (pk, value, version)."""
        assert [Item("p2", "a", b"v", 1)] == await filled.query("p2")

    async def test_prefix(self, filled: Backend) -> None:
        """Only sort keys starting with the prefix come back."""
        assert ["b/1", "b/10", "b/2"] == sks(await filled.query("p", "b/"))
        assert ["b", "b/1", "b/10", "b/2", "ba"] == sks(await filled.query("p", "b"))
        assert [] == await filled.query("p", "zz")

    async def test_after_pages_forward(self, filled: Backend) -> None:
        """``after`` is exclusive and pages through with ``limit``."""
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = await filled.query("p", after=after, limit=3)
            if not page:
                break
            pages.append(sks(page))
            after = page[-1].sk
        assert [["a", "b", "b/1"], ["b/10", "b/2", "ba"], ["c"]] == pages

    async def test_after_with_prefix(self, filled: Backend) -> None:
        """``after`` combines with the prefix."""
        assert ["b/10", "b/2"] == sks(await filled.query("p", "b/", after="b/1"))
        assert ["b/1", "b/10", "b/2"] == sks(await filled.query("p", "b/", after="a"))

    async def test_after_not_stored(self, filled: Backend) -> None:
        """``after`` need not name a stored key."""
        assert ["b/2", "ba", "c"] == sks(await filled.query("p", after="b/11"))

    async def test_reverse(self, filled: Backend) -> None:
        """``reverse`` orders descending; ``limit`` keeps the last keys."""
        assert ["c", "ba", "b/2", "b/10", "b/1", "b", "a"] == sks(
            await filled.query("p", reverse=True)
        )
        assert ["b/2", "b/10"] == sks(await filled.query("p", "b/", reverse=True, limit=2))

    async def test_reverse_after_pages_backward(self, filled: Backend) -> None:
        """With ``reverse``, ``after`` means 'before' and pages backwards."""
        assert ["b/1", "b"] == sks(await filled.query("p", "b", after="b/10", reverse=True))
        assert ["b/10", "b/1", "b"] == sks(
            await filled.query("p", after="b/2", reverse=True, limit=3)
        )

    async def test_limit(self, filled: Backend) -> None:
        """``limit`` bounds the result; 0 returns nothing."""
        assert ["a", "b"] == sks(await filled.query("p", limit=2))
        assert [] == await filled.query("p", limit=0)
        assert 7 == len(await filled.query("p", limit=100))

    async def test_empty_partition(self, backend: Backend) -> None:
        """A partition with no items queries as empty."""
        assert [] == await backend.query("nothing")
        assert [] == await backend.query("nothing", "x", after="a", reverse=True, limit=1)

    async def test_partitions_are_separate(self, filled: Backend) -> None:
        """A query never sees items of another partition, even with a shared prefix."""
        await filled.write([put("a", pk="p/x"), put("a", pk="pp")])
        assert ["a"] == sks(await filled.query("p2"))
        assert ["b/3"] == sks(await filled.query("other", "b"))


SPECIAL_KEYS = [
    "a/b/c",
    "/leading",
    "trailing/",
    "a#b##",
    "..",
    "../..",
    "a/../b",
    "spaces and\ttabs",
    "quote'\"",
    "percent%20_and_underscore",
    "ünïcödé",
    "日本語",
    "emoji😀",
    "\u00a0nbsp",
    "back\\slash",
    "*?[glob]",
    "%",
    "_",
]


class TestKeys:
    @pytest.mark.parametrize("key", SPECIAL_KEYS)
    async def test_special_characters_round_trip(self, backend: Backend, key: str) -> None:
        """Keys with separators, dots, wildcards and Unicode work as pk, sk and prefix."""
        await backend.write([Put(key, key, b"v"), Put(key, key + "/child", b"c")])
        assert Item(key, key, b"v", 1) == await backend.get(key, key)
        assert [key, key + "/child"] == sks(await backend.query(key, key))
        assert [key + "/child"] == sks(await backend.query(key, key + "/"))
        assert [key] == [i.pk for i in await backend.scan(key, key)]

    async def test_wildcard_prefix_is_literal(self, backend: Backend) -> None:
        """Prefix matching is literal: '%' and '_' are not LIKE wildcards."""
        await backend.write([put("a%b"), put("axb"), put("a_c"), put("ayc")])
        assert ["a%b"] == sks(await backend.query("p", "a%"))
        assert ["a_c"] == sks(await backend.query("p", "a_"))

    async def test_empty_sort_key(self, backend: Backend) -> None:
        """The empty string is a valid sort key and sorts first."""
        await backend.write([put("a"), put("")])
        assert Item("p", "", b"v", 1) == await backend.get("p", "")
        assert ["", "a"] == sks(await backend.query("p"))
        assert ["a"] == sks(await backend.query("p", after=""))
        await backend.write([put("", b"w", expect=1)])
        assert 2 == await version(backend, "p", "")

    async def test_keys_sort_by_utf8_bytes(self, backend: Backend) -> None:
        """Sort keys order as UTF-8 bytes (code points), not UTF-16 units or locale."""
        keys = ["Z", "a", "z", "é", "\uffff", "😀", "\U0010ffff"]
        await backend.write([put(k) for k in reversed(keys)])
        assert keys == sks(await backend.query("p"))
        assert keys[::-1] == sks(await backend.query("p", reverse=True))

    async def test_prefix_at_top_of_unicode(self, backend: Backend) -> None:
        """A prefix ending in U+10FFFF or just below the surrogates still matches exactly."""
        top, below = "\U0010ffff", "\ud7ff"
        await backend.write([put(top), put(top + "a"), put(below + "x"), put("\ue000")])
        assert [top, top + "a"] == sks(await backend.query("p", top))
        assert [below + "x"] == sks(await backend.query("p", below))

    async def test_lone_surrogate_is_value_error(self, backend: Backend) -> None:
        """Keys must be valid Unicode text (encodable as UTF-8)."""
        with pytest.raises(ValueError):
            await backend.write([put("\ud800")])


class TestValues:
    @pytest.mark.parametrize(
        "value",
        [b"", b"\x00", b"\xff\xfe\x00\x80", bytes(range(256)), "ünï".encode(), b"\x00" * 1000],
        ids=["empty", "nul", "invalid-utf8", "all-bytes", "utf8", "zeros"],
    )
    async def test_bytes_round_trip(self, backend: Backend, value: bytes) -> None:
        """Values are opaque bytes: empty, NUL and non-UTF-8 values come back unchanged."""
        await backend.write([put("k", value)])
        item = await backend.get("p", "k")
        assert item is not None
        assert value == item.value
        assert isinstance(item.value, bytes)
        assert [value] == [i.value for i in await backend.query("p")]


class TestDue:
    async def test_ordered_by_due_then_key(self, backend: Backend) -> None:
        """``due`` orders by (due_ms, pk, sk) across partitions."""
        await backend.write(
            [put("b", pk="y", due=20), put("a", pk="y", due=20), put("z", pk="x", due=20)]
        )
        await backend.write([put("late", due=30), put("early", due=10), put("nodue")])
        got = await backend.due(100, 10)
        assert [("p", "early"), ("x", "z"), ("y", "a"), ("y", "b"), ("p", "late")] == [
            (i.pk, i.sk) for i in got
        ]
        assert [10, 20, 20, 20, 30] == [i.due_ms for i in got]

    async def test_bound_is_inclusive(self, backend: Backend) -> None:
        """Items due exactly at ``until_ms`` are included; later ones are not."""
        await backend.write([put("a", due=10), put("b", due=11)])
        assert ["a"] == sks(await backend.due(10, 10))
        assert [] == await backend.due(9, 10)

    async def test_limit(self, backend: Backend) -> None:
        """``limit`` keeps the earliest items."""
        await backend.write([put(f"k{i}", due=100 - i) for i in range(10)])
        assert ["k9", "k8", "k7"] == sks(await backend.due(1_000, 3))
        assert [] == await backend.due(1_000, 0)

    async def test_items_carry_value_and_version(self, backend: Backend) -> None:
        """Due items are whole items."""
        await backend.write([put("t", b"payload", due=5)])
        assert [Item("p", "t", b"payload", 1, 5)] == await backend.due(5, 1)

    async def test_rewrite_without_due_clears(self, backend: Backend) -> None:
        """Rewriting an item without ``due_ms`` removes it from the due index."""
        await backend.write([put("t", due=5)])
        await backend.write([put("t", expect=1)])
        assert [] == await backend.due(100, 10)
        assert (await backend.get("p", "t")) == Item("p", "t", b"v", 2, None)

    async def test_rewrite_moves_due(self, backend: Backend) -> None:
        """Rewriting with another ``due_ms`` moves the item in the index (one entry)."""
        await backend.write([put("t", due=5), put("u", due=7)])
        await backend.write([put("t", expect=1, due=50)])
        assert ["u"] == sks(await backend.due(10, 10))
        assert ["u", "t"] == sks(await backend.due(50, 10))

    async def test_unconditional_rewrite_clears(self, backend: Backend) -> None:
        """An unconditional put without ``due_ms`` clears the due time too."""
        await backend.write([put("t", due=5)])
        await backend.write([put("t", expect=None)])
        assert [] == await backend.due(100, 10)

    async def test_delete_clears(self, backend: Backend) -> None:
        """A deleted item leaves the due index."""
        await backend.write([put("t", due=5), put("u", due=6)])
        await backend.write([Delete("p", "t", expect=1)])
        await backend.write([Delete("p", "u")])
        assert [] == await backend.due(100, 10)

    async def test_negative_and_zero_due(self, backend: Backend) -> None:
        """Zero and negative due times are ordinary integers."""
        await backend.write([put("z", due=0), put("n", due=-5)])
        assert ["n", "z"] == sks(await backend.due(0, 10))


class TestScan:
    async def test_by_pk_prefix_and_sk(self, backend: Backend) -> None:
        """Scan returns the items with that sort key in partitions with that prefix, by pk."""
        await backend.write(
            [
                put("meta", pk="inv#b"),
                put("meta", pk="inv#a"),
                put("j#1", pk="inv#a"),
                put("meta", pk="obj#a"),
                put("meta", pk="inv"),
                put("other", pk="inv#c"),
            ]
        )
        assert ["inv#a", "inv#b"] == [i.pk for i in await backend.scan("inv#", "meta")]
        assert ["inv", "inv#a", "inv#b"] == [i.pk for i in await backend.scan("inv", "meta")]
        assert ["inv#a"] == [i.pk for i in await backend.scan("inv#", "j#1")]
        assert 4 == len(await backend.scan("", "meta"))

    async def test_limit(self, backend: Backend) -> None:
        """``limit`` keeps the first partitions in pk order."""
        await backend.write([put("m", pk=f"k{i}") for i in range(5)])
        assert ["k0", "k1"] == [i.pk for i in await backend.scan("k", "m", limit=2)]
        assert [] == await backend.scan("k", "m", limit=0)

    async def test_empty(self, backend: Backend) -> None:
        """No match scans as empty."""
        assert [] == await backend.scan("x", "y")


class TestReadYourWrites:
    async def test_every_read_sees_a_returned_write(self, backend: Backend) -> None:
        """Once write returns, get, query, due and scan all see it."""
        for n in range(1, 6):
            await backend.write([put(f"k{n}", str(n).encode(), due=n)])
            assert Item("p", f"k{n}", str(n).encode(), 1, n) == await backend.get("p", f"k{n}")
            assert n == len(await backend.query("p"))
            assert n == len(await backend.due(n, 100))
            assert 1 == len(await backend.scan("p", f"k{n}"))
            await backend.write([Delete("p", f"k{n}", expect=1)])
            assert await backend.get("p", f"k{n}") is None
            await backend.write([put(f"k{n}", str(n).encode(), due=n)])


class TestConcurrency:
    async def test_cas_increments_are_serialised(self, backend: Backend) -> None:
        """40 concurrent read-modify-CAS loops end at exactly 40; every success is distinct."""
        await backend.write([put("counter", b"0")])

        async def increment() -> int:
            while True:
                item = await backend.get("p", "counter")
                assert item is not None
                new = int(item.value) + 1
                try:
                    await backend.write([put("counter", str(new).encode(), expect=item.version)])
                except ConflictError:
                    continue
                return new

        results = await asyncio.gather(*(increment() for _ in range(40)))
        assert list(range(1, 41)) == sorted(results)
        assert Item("p", "counter", b"40", 41) == await backend.get("p", "counter")

    async def test_one_create_wins(self, backend: Backend) -> None:
        """Of 30 concurrent create-if-absent writes of one item, exactly one wins."""
        results = await asyncio.gather(
            *(backend.write([put("x", str(i).encode())]) for i in range(30)),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if r is None]
        assert 1 == len(winners)
        assert all(isinstance(r, ConflictError) for r in results if r is not None)
        assert all(r.index == 0 for r in results if isinstance(r, ConflictError))
        assert Item("p", "x", str(winners[0]).encode(), 1) == await backend.get("p", "x")

    async def test_disjoint_batches_all_succeed(self, backend: Backend) -> None:
        """Concurrent batches on disjoint keys all apply."""
        await asyncio.gather(
            *(backend.write([put(f"k{i:03d}"), put("j", pk=f"q{i}")]) for i in range(50))
        )
        assert 50 == len(await backend.query("p"))
        assert 50 == len(await backend.scan("q", "j"))

    async def test_conflicting_batch_does_not_poison_others(self, backend: Backend) -> None:
        """A concurrent batch that conflicts fails alone; the others in flight apply."""
        await backend.write([put("taken")])
        results = await asyncio.gather(
            *(backend.write([put(f"ok{i}"), put(f"ok{i}/2")]) for i in range(10)),
            backend.write([put("fresh"), put("taken")]),
            *(backend.write([put(f"ok{i}", pk="q")]) for i in range(10)),
            return_exceptions=True,
        )
        assert isinstance(results[10], ConflictError) and 1 == results[10].index
        assert [None] * 20 == results[:10] + results[11:]
        assert await backend.get("p", "fresh") is None
        assert 21 == len(await backend.query("p"))
