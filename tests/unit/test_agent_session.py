"""A session's way out: messages written in order, one write at a time, nothing after its end."""

from __future__ import annotations

import asyncio

from medic_core.agent.sessions import Session
from medic_core.audit import Actor


class RecordingTransport:
    """Records writes; each write takes a moment, so overlapping writes would show."""

    def __init__(self, *, fail_on: object = None) -> None:
        self.written: list[object] = []
        self.interrupts = 0
        self.writing = 0
        self.most_at_once = 0
        self._fail_on = fail_on

    async def write(self, message: object) -> None:
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await asyncio.sleep(0.001)
            if message == self._fail_on:
                raise ConnectionError("the stream broke")
            self.written.append(message)
        finally:
            self.writing -= 1

    def interrupt(self) -> None:
        self.interrupts += 1


def session(transport: RecordingTransport) -> Session:
    return Session(Actor("key:test"), transport)


async def test_sent_messages_are_written_in_order_one_at_a_time() -> None:
    transport = RecordingTransport()
    s = session(transport)
    for n in range(5):
        s.send(n)
    await asyncio.sleep(0)
    s.send(5)  # while the writer runs: joins its queue
    await s.flushed()
    assert transport.written == [0, 1, 2, 3, 4, 5]
    assert transport.most_at_once == 1
    s.send(6)  # idle again: a new writer
    await s.flushed()
    assert transport.written[-1] == 6


async def test_what_was_sent_before_the_end_goes_out_and_nothing_after() -> None:
    transport = RecordingTransport()
    s = session(transport)
    s.send("execute")
    s.end("replaced", "a newer stream")
    s.end("silent", "ignored: the first reason wins")
    s.send("too late")
    await s.flushed()
    assert transport.written == ["execute"]
    assert s.ended is not None
    assert (s.ended.reason, s.ended.detail) == ("replaced", "a newer stream")
    assert transport.interrupts == 1


async def test_a_failed_write_drops_what_was_queued_behind_it() -> None:
    transport = RecordingTransport(fail_on="broken")
    s = session(transport)
    for message in ("first", "broken", "lost"):
        s.send(message)
    await s.flushed()
    assert transport.written == ["first"]
    s.send("next")  # a later send tries again (and would fail too on a really broken stream)
    await s.flushed()
    assert transport.written == ["first", "next"]


async def test_flushed_returns_at_once_when_nothing_is_being_written() -> None:
    s = session(RecordingTransport())
    async with asyncio.timeout(1):
        await s.flushed()


def test_sessions_have_no_instance_dict() -> None:
    assert not hasattr(session(RecordingTransport()), "__dict__")
