"""StartMarks batching, without Redis: who waits, who sends, and what a failure tells them."""

from __future__ import annotations

import asyncio

import pytest
import redis

from queue_system.worker.start_marks import StartMarks, carry


def test_marks_of_one_moment_go_in_one_call() -> None:
    sent: list[list[str]] = []

    async def send(tokens: list[str]) -> None:
        sent.append(list(tokens))

    async def main() -> None:
        marks = StartMarks(send)
        await asyncio.gather(*(marks.mark(t) for t in ("a", "b", "c")))
        await marks.mark("d")

    asyncio.run(main())
    assert sent == [["a", "b", "c"], ["d"]]


def test_a_call_going_out_carries_the_pending_marks() -> None:
    sent: list[list[str]] = []

    async def send(tokens: list[str]) -> None:
        sent.append(tokens)

    async def main() -> str:
        marks = StartMarks(send)
        waiting = asyncio.ensure_future(marks.mark("a"))
        await asyncio.sleep(0)  # the executor now waits for its mark

        async def ack() -> str:
            return "acked"

        result = await carry(marks.take(), ack())
        await waiting
        return result

    assert asyncio.run(main()) == "acked"
    assert sent == []  # nothing sent alone


def test_waiters_get_the_carrying_calls_error() -> None:
    async def send(tokens: list[str]) -> None:
        raise redis.ConnectionError("down")

    async def main() -> None:
        await StartMarks(send).mark("a")

    with pytest.raises(redis.ConnectionError, match="down"):
        asyncio.run(main())


def test_a_cancelled_carrier_gives_waiters_a_retriable_error_not_a_cancel() -> None:
    async def main() -> BaseException | None:
        marks = StartMarks(lambda tokens: asyncio.sleep(0))
        waiting = asyncio.ensure_future(marks.mark("a"))
        await asyncio.sleep(0)
        carrier = asyncio.ensure_future(carry(marks.take(), asyncio.sleep(3600)))
        await asyncio.sleep(0)
        carrier.cancel()
        await asyncio.gather(carrier, return_exceptions=True)
        [result] = await asyncio.gather(waiting, return_exceptions=True)
        return result

    error = asyncio.run(main())
    assert isinstance(error, redis.ConnectionError)
