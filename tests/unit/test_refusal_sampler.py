"""A flood of refused messages is recorded at most N a second; the next one recorded says how
many were not (flows.inbound.RefusalSampler)."""

from __future__ import annotations

from medbridge.canonical.messages import MessageRecord, MessageStatus
from medbridge.flows.inbound import RefusalSampler


def refused(n: int) -> MessageRecord:
    return MessageRecord(
        protocol="hl7v2",
        connector="hl7v2",
        raw=f"junk {n}",
        status=MessageStatus.REFUSED,
        error="message does not start with an MSH segment",
    )


def test_at_most_n_a_second_then_a_note_of_the_rest() -> None:
    now = [100.2]
    sampler = RefusalSampler(3, clock=lambda: now[0])
    records = [refused(n) for n in range(10)]
    assert [sampler.admit(r) for r in records] == [True] * 3 + [False] * 7
    assert records[0].error == "message does not start with an MSH segment"
    now[0] = 101.0  # the next second
    later = refused(10)
    assert sampler.admit(later)
    assert later.error is not None
    assert later.error.endswith("(7 more refusals before this one were not recorded: a flood)")
    again = refused(11)
    assert sampler.admit(again)
    assert "not recorded" not in (again.error or "")  # counted once
