"""The decoder slots' order (service.pools.FairSlots) on a real event loop: a freed slot goes to
the waiting tenant holding fewest, a lone tenant uses every slot, and a waiter cancelled while
waiting leaves no slot lost."""

from __future__ import annotations

import anyio

from service.pools import FairSlots


def run(steps) -> list[str]:
    order: list[str] = []
    anyio.run(steps, order)
    return order


def test_a_freed_slot_goes_to_the_tenant_holding_fewest():
    async def steps(order):
        slots = FairSlots(2)
        await slots.acquire("alice")
        await slots.acquire("alice")            # alone: alice may hold both
        assert slots.free == 0

        async def wait(tenant: str) -> None:
            await slots.acquire(tenant)
            order.append(tenant)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait, "alice")     # queued first
            await anyio.sleep(0.01)
            tasks.start_soon(wait, "bob")
            await anyio.sleep(0.01)
            slots.release("alice")              # alice holds 1, bob 0: bob's turn
            await anyio.sleep(0.01)
            assert order == ["bob"]
            slots.release("bob")
        assert order == ["bob", "alice"] and slots.held == {"alice": 2}

    run(steps)


def test_among_tenants_holding_as_many_the_longest_waiting_goes_first():
    async def steps(order):
        slots = FairSlots(1)
        await slots.acquire("carol")

        async def wait(tenant: str) -> None:
            await slots.acquire(tenant)
            order.append(tenant)
            slots.release(tenant)

        async with anyio.create_task_group() as tasks:
            for tenant in ("alice", "bob", "dan"):
                tasks.start_soon(wait, tenant)
                await anyio.sleep(0.01)
            slots.release("carol")
        assert order == ["alice", "bob", "dan"] and slots.free == 1

    run(steps)


def test_a_cancelled_waiter_loses_no_slot():
    async def steps(order):
        slots = FairSlots(1)
        await slots.acquire("alice")
        with anyio.move_on_after(0.05):
            await slots.acquire("bob")          # cancelled while waiting
        assert slots.waiting == [] and slots.free == 0
        slots.release("alice")
        assert slots.free == 1 and not slots.held
        await slots.acquire("bob")              # the slot is there for the next one
        order.append("bob")

    assert run(steps) == ["bob"]
