"""One target per parser: its seeds, its input generator and how one input is run.

``run`` returns True when the input was accepted and False when it was refused with the
parser's own typed error; anything else it lets escape (or raises as ``Untyped``) is a
finding. A FHIR answer of 5xx, or an HL7 content error not acknowledged ``AE``, is one too.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any

from fuzz import grammar
from fuzz.mutate import mutate_bytes, mutate_text


class Untyped(Exception):
    """A parser answered wrongly without raising (a 5xx, an AR for a content error)."""


@dataclass(frozen=True)
class Target:
    name: str
    generate: Callable[[random.Random], bytes]
    run: Callable[[bytes], bool]


def samples_dir() -> Path:
    """``$MEDBRIDGE_SHARED_DIR/samples``, else the nearest ``shared/samples`` above the
    checkout (as tests/paths.py finds them)."""
    if os.environ.get("MEDBRIDGE_SHARED_DIR"):
        return Path(os.environ["MEDBRIDGE_SHARED_DIR"]) / "samples"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "samples").is_dir():
            return parent / "shared" / "samples"
    raise FileNotFoundError("no shared/samples above the checkout: set MEDBRIDGE_SHARED_DIR")


@cache
def _texts(folder: str, *suffixes: str) -> tuple[str, ...]:
    root = samples_dir() / folder
    texts = [
        p.read_bytes().decode("utf-8", "replace")
        for p in sorted(root.iterdir())
        if p.suffix in suffixes
    ]
    if not texts:
        raise FileNotFoundError(f"no {suffixes} samples in {root}")
    return tuple(texts)


def _mutated(rng: random.Random, seeds: Sequence[str], structured: Callable[..., str]) -> bytes:
    """A third grammar-aware, a half text mutations, the rest byte damage."""
    seed = rng.choice(seeds)
    roll = rng.random()
    if roll < 0.35:
        text = structured(rng, seed)
    elif roll < 0.85:
        text = mutate_text(rng, seed, seeds)
    else:
        return mutate_bytes(rng, seed.encode("utf-8"))
    return text.encode("utf-8", "surrogatepass")


# --- HL7 v2 ----------------------------------------------------------------------------------


def _hl7_generate(rng: random.Random) -> bytes:
    if rng.random() < 0.4:
        return grammar.hl7_message(rng)
    return _mutated(rng, _texts("hl7v2", ".hl7"), grammar.hl7_structured)


def _hl7_run(raw: bytes) -> bool:
    from medbridge.connectors.hl7v2.ack import build_ack
    from medbridge.connectors.hl7v2.codec import Message, decode, parse
    from medbridge.connectors.hl7v2.errors import ContentError, Hl7Error
    from medbridge.connectors.hl7v2.mapping import map_message

    message: Message | None = None
    try:
        message = parse(decode(raw))
        map_message(message, b"fuzz-secret")
    except Hl7Error as error:
        if isinstance(error, ContentError) and error.ack_code != "AE":
            raise Untyped(f"content error acknowledged {error.ack_code}: {error}") from error
        build_ack(message, error.ack_code, error=error)
        return False
    build_ack(message, "AA")
    return True


# --- X12 -------------------------------------------------------------------------------------


def _x12_generate(rng: random.Random) -> bytes:
    return _mutated(rng, _texts("x12", ".edi"), grammar.x12_structured)


def _x12_run(raw: bytes) -> bool:
    from medbridge.connectors.x12 import X12Error, functional_ack, parse_interchange

    try:
        parsed = parse_interchange(raw)
    except X12Error:
        return False
    functional_ack(
        parsed,
        interchange_control=1,
        group_control=1,
        set_control=1,
        sent_on=date(2026, 1, 1),
        sent_at=time(12, 0),
    )
    return not parsed.errors


# --- cXML ------------------------------------------------------------------------------------


def _cxml_generate(rng: random.Random) -> bytes:
    return _mutated(rng, _texts("cxml", ".xml"), grammar.xml_structured)


def _cxml_run(raw: bytes) -> bool:
    from medbridge.connectors.cxml import CxmlError, parse, render_error

    try:
        parse(raw)
    except CxmlError as error:
        render_error(error, payload_id="fuzz@medbridge", timestamp=datetime(2026, 1, 1, tzinfo=UTC))
        return False
    return True


# --- FHIR R4 ---------------------------------------------------------------------------------


@cache
def _fhir_seeds() -> tuple[tuple[str, str], ...]:
    """(content type, text) of every FHIR sample."""
    root = samples_dir() / "fhir"
    seeds = []
    for path in sorted(root.iterdir()):
        kind = {".json": "application/fhir+json", ".xml": "application/fhir+xml"}.get(path.suffix)
        if kind:
            seeds.append((kind, path.read_text(encoding="utf-8")))
    return tuple(seeds)


def _fhir_generate(rng: random.Random) -> bytes:
    kind, seed = rng.choice(_fhir_seeds())
    texts = [t for k, t in _fhir_seeds() if k == kind]
    roll = rng.random()
    if kind.endswith("json") and roll < 0.45:
        text = grammar.json_structured(rng, json.loads(seed))
    elif kind.endswith("xml") and roll < 0.35:
        text = grammar.xml_structured(rng, seed)
    elif roll < 0.9:
        text = mutate_text(rng, seed, texts)
    else:
        return b"X" + mutate_bytes(rng, seed.encode())  # the marker byte says: as JSON
    return (b"J" if kind.endswith("json") else b"X") + text.encode("utf-8", "surrogatepass")


class _Sink:
    """Accepts everything: the store is not the parser under test (and far slower)."""

    def receive(self, drafts: Sequence[Any], **_: Any) -> Any:
        from medbridge.canonical.inbound import InboundOutcome, InboundReceipt

        return InboundReceipt(InboundOutcome.ACCEPTED)

    def receive_all(self, messages: Sequence[Any], **_: Any) -> Any:
        from medbridge.canonical.inbound import InboundOutcome, InboundReceipt
        from medbridge.connectors.fhir.inbound import AtomicResult

        return AtomicResult(tuple(InboundReceipt(InboundOutcome.ACCEPTED) for _ in messages))


@cache
def _fhir_receiver() -> Any:
    from pydantic import SecretStr

    from medbridge.connectors.fhir import FhirConfig, FhirReceiver

    secret = SecretStr("fuzz-pseudonym-key-of-32-characters")
    config = FhirConfig(pseudonym_secret=secret)
    return FhirReceiver(_Sink(), _Sink(), config)


@cache
def quiet() -> None:
    """Refusals are logged by the connectors at warning: a million of them is noise here."""
    from medbridge.observability.logging import configure_logging

    configure_logging("CRITICAL", json=False)


def _fhir_run(raw: bytes) -> bool:
    """The first byte says the media type (J: JSON, X: XML); the URL is the resource's own
    type as the body declares it (a Bundle goes to the base)."""
    kind = "application/fhir+json" if raw[:1] == b"J" else "application/fhir+xml"
    body = raw[1:]
    expected = _declared_type(body)
    answer = _fhir_receiver().handle(body, kind, client="fuzz", expected=expected)
    if answer.status >= 500:
        raise Untyped(f"FHIR answered {answer.status}: {answer.body}")
    return bool(answer.status < 300)


def _declared_type(body: bytes) -> str | None:
    for name in ("MedicationDispense", "SupplyDelivery", "Procedure"):
        if name.encode() in body[:400]:
            return name
    return None


# --- GS1 -------------------------------------------------------------------------------------


@cache
def _gs1_seeds() -> tuple[str, ...]:
    path = samples_dir() / "gs1" / "gs1-element-strings.jsonl"
    seeds = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            seeds += [v for v in (record.get("raw"), record.get("hri")) if isinstance(v, str)]
    return tuple(seeds)


def _gs1_generate(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        text = grammar.gs1_scan(rng)
    else:
        text = mutate_text(rng, rng.choice(_gs1_seeds()), _gs1_seeds())
    return text.encode("utf-8", "surrogatepass")


def _gs1_run(raw: bytes) -> bool:
    from medbridge.connectors.gs1 import Gs1Error, parse, to_receipt_line

    try:
        scan = parse(raw.decode("utf-8", "surrogatepass"))
        to_receipt_line(
            scan,
            location="H1-DOCK",
            source_system="gs1:dock",
            received_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    except Gs1Error:
        return False
    return True


# --- flat-file CSV ---------------------------------------------------------------------------

CSV_SEED = (
    "item,location,lot,quantity\n"
    "VANCO-1G,H1-PHARM,V1,37\n"
    "AMPI-250,H1-PHARM,A1,2\n"
    '"AMPI-250","H1-PHARM","A9","15"\n'
    "#EOF,3\n"
)


def _csv_generate(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return grammar.csv_snapshot(rng)
    if rng.random() < 0.15:
        return mutate_bytes(rng, CSV_SEED.encode())
    return mutate_text(rng, CSV_SEED, (CSV_SEED,)).encode("utf-8", "surrogatepass")


@cache
def _csv_config() -> Any:
    from medbridge.connectors.flatfile import FlatFileConfig

    return FlatFileConfig(source="fuzz")


def _csv_run(raw: bytes) -> bool:
    from medbridge.connectors.flatfile import FlatFileError, parse
    from medbridge.connectors.flatfile.codec import is_complete

    try:
        is_complete(raw, _csv_config())
        parse(raw, _csv_config(), "fuzz.csv")
    except FlatFileError:
        return False
    return True


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("hl7v2", _hl7_generate, _hl7_run),
        Target("x12", _x12_generate, _x12_run),
        Target("cxml", _cxml_generate, _cxml_run),
        Target("fhir", _fhir_generate, _fhir_run),
        Target("gs1", _gs1_generate, _gs1_run),
        Target("csv", _csv_generate, _csv_run),
    )
}
