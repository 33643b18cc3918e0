"""Event backbone: the Bus port, the generic consumer loop, and the adapters (embedded SQL
log; NATS JetStream for scale-out)."""

from medbridge.bus.consumer import Consumer, ReplayReport
from medbridge.bus.port import (
    AppendResult,
    Bus,
    BusMessage,
    DeadLetter,
    DeadLetterFilter,
    Handler,
    RetryPolicy,
)

__all__ = [
    "AppendResult",
    "Bus",
    "BusMessage",
    "Consumer",
    "DeadLetter",
    "DeadLetterFilter",
    "Handler",
    "ReplayReport",
    "RetryPolicy",
]
