"""Typed configuration of the HL7 v2 connector."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, SecretStr


class UnmappedAck(StrEnum):
    """How to acknowledge a message parked in the exception queue (codes not yet mapped)."""

    ACCEPT = "AA"  # accepted for review: the sender must not resend
    ERROR = "AE"  # application error: the sender shows it on its side too


class MllpTls(BaseModel):
    """TLS of the MLLP listener: its certificate, and the CA its senders' certificates must
    chain to. With ``ca_file`` a sender must present a certificate of that CA
    (``require_client_cert``, the default) or may present none (false: one that is
    presented is still verified); without it, no client certificate is asked for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cert_file: Path
    """PEM certificate (chain) of the listener."""
    key_file: Path | None = None
    """Its private key (unset: in ``cert_file``)."""
    ca_file: Path | None = None
    require_client_cert: bool = True
    handshake_timeout: float = Field(default=10.0, gt=0)
    """Seconds a connection may take to complete its handshake before it is closed."""


class Hl7Config(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=2575, ge=0, le=65535)
    tls: MllpTls | None = None
    """TLS on the listener (None: plain TCP, the default)."""
    allowed_sources: tuple[IPvAnyNetwork, ...] = ()
    """Networks senders may connect from (empty: any); a connection from elsewhere is
    closed before anything it sent is read."""
    source_clients: tuple[tuple[IPvAnyNetwork, str], ...] = ()
    """Senders bound to an API client by the network they connect from (the most specific
    network wins); the client's name goes with each message to the inbound sink."""
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    idle_timeout: float = Field(default=300.0, gt=0)
    max_in_flight: int = Field(default=64, ge=1, le=10_000)
    """Messages of one connection worked on at once (pipelining); reading waits beyond."""
    max_messages_per_second: float = Field(default=5000.0, ge=0)
    """One connection is slowed down beyond this rate (0: no bound)."""
    max_refusals_per_second: float = Field(default=20.0, ge=0)
    """A connection whose messages are refused is slowed down to this rate of refusals."""
    frames_per_turn: int = Field(default=4, ge=1, le=1000)
    """Messages one connection works on before the next connection's turn."""
    unmapped_ack: UnmappedAck = UnmappedAck.ACCEPT
    strict_validation: bool = False
    """Validate structure and data types with hl7apy first (slow: for on-boarding a sender)."""
    pseudonym_secret: SecretStr = SecretStr("change-me")
    receiving_application: str = "MEDBRIDGE"
    receiving_facility: str = "MEDBRIDGE"
