"""Which Bus adapter the settings choose: NATS JetStream when ``bus_url`` is set, else the
embedded SQL log. nats-py is imported only when JetStream is chosen."""

from __future__ import annotations

from sqlalchemy import Engine

from medbridge.bus.dead_letters import SqlDeadLetterStore
from medbridge.bus.port import Bus
from medbridge.bus.sql import SqlBus
from medbridge.settings import Settings


def bus_from_settings(settings: Settings, engine: Engine) -> Bus:
    """The configured bus; dead letters go to ``engine``'s database with either adapter.
    Raises ``BusUnavailable`` if the NATS server does not answer."""
    if not settings.bus_url:
        return SqlBus(engine, partitions=settings.bus_partitions)
    from medbridge.bus.jetstream import JetStreamBus, JetStreamConfig

    config = JetStreamConfig(
        url=settings.bus_url,
        stream=settings.bus_stream,
        subject_prefix=settings.bus_subject_prefix,
        partitions=settings.bus_partitions,
        duplicate_window=settings.bus_duplicate_window,
        ack_wait=settings.bus_ack_wait,
    )
    return JetStreamBus(config, SqlDeadLetterStore(engine))
