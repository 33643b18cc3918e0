"""Inbound FHIR: one request body in (a resource or a Bundle), one FHIR answer out.

Answers (only once the outcome is durable):

- 201 Created: movements appended; an OperationOutcome (information) lists the event ids.
- 201 Created with a warning: a code did not resolve; the resource is parked in the exception
  queue (accepted for review: do not resend), the warning names the field and the exception.
- 200 OK: the same resource again (no second effect), or nothing to apply (status, no used
  items), or, in a Bundle, a resource type MedBridge does not take (ignored, unread).
- 4xx: an OperationOutcome whose issues carry the FHIRPath of each problem (see errors.py).

Bundles: ``batch`` answers each entry on its own (``batch-response``). ``transaction`` checks
every entry first (valid R4, mappable, every code resolving) and appends all of them in one
commit, or stores nothing and answers 4xx naming each problem.

Every request body is recorded for the message browser (``canonical.messages``), with the
client as its sender: a single resource with its movements (applied, duplicate: in their
transaction; parked: in its exception's), a refused body or a Bundle through the sink's
``MessageLog`` once answered (a Bundle's row is written after its outcome, not in its
transaction). The stored acknowledgement is the answer's status and OperationOutcome.

Idempotency key (frozen: never change this derivation): ``fhir:<client>:<type>/<id>``; without
an id, the first identifier as an HMAC with the pseudonym secret (an identifier may be a
patient's number; so rotating the secret changes these keys); without either, the SHA-256 of
the resource's canonical JSON.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, Protocol

import orjson
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from medbridge.canonical.inbound import (
    InboundMovement,
    InboundOutcome,
    InboundReceipt,
    InboundSink,
    UnresolvedCode,
)
from medbridge.canonical.messages import MessageLog, MessageRecord, MessageStatus
from medbridge.connectors.fhir.codec import Payload, decode, recognise
from medbridge.connectors.fhir.config import FhirConfig
from medbridge.connectors.fhir.errors import (
    FhirError,
    Issue,
    NotConfigured,
    PayloadTooLarge,
    UnmappableResource,
    UnsupportedResource,
    operation_outcome,
    rebase,
)
from medbridge.connectors.fhir.mapping import CONSUMED, Context, Mapped, map_resource
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

CONTEXT_TYPES = ("Medication", "Device", "Substance", "Location")
"""Bundle entries read only when another entry points to them."""
BUNDLE_TYPES = ("batch", "transaction")


@dataclass(frozen=True)
class SourceMessage:
    """The movements of one resource, with its idempotency key."""

    drafts: Sequence[InboundMovement]
    idempotency_key: str


@dataclass(frozen=True)
class AtomicResult:
    receipts: tuple[InboundReceipt, ...] = ()
    unresolved: tuple[tuple[int, UnresolvedCode], ...] = ()
    """(message index, problem): nothing was stored."""
    refused: bool = False
    """The problems are movements outside the sender's facilities (403, not 422)."""


class AtomicSink(Protocol):
    """Resolve every message's codes, then append all of them in one commit; or, if any code
    does not resolve, store nothing (not even in the exception queue) and say which."""

    def receive_all(self, messages: Sequence[SourceMessage], *, source: str) -> AtomicResult: ...


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def idempotency_key(client: str, resource: Resource, secret: bytes) -> str:
    """Frozen: never change this derivation (a resent resource must get the same key)."""
    rt = resource.get_resource_type()
    if resource.id:
        key = f"fhir:{client}:{rt}/{resource.id}"
    else:
        identifier = next((i for i in getattr(resource, "identifier", None) or [] if i.value), None)
        if identifier is not None:
            mac = hmac.new(
                secret, f"{identifier.system or ''}|{identifier.value}".encode(), "sha256"
            )
            key = f"fhir:{client}:{rt}?identifier={mac.hexdigest()[:32]}"
        else:
            canonical = orjson.dumps(
                resource.model_dump(mode="json", by_alias=True, exclude_none=True),
                option=orjson.OPT_SORT_KEYS,
            )
            key = f"fhir:{client}:{rt}#sha256:{hashlib.sha256(canonical).hexdigest()[:40]}"
    if len(key) > 150:
        key = f"fhir:{client[:40]}:{rt}#sha256:{hashlib.sha256(key.encode()).hexdigest()[:40]}"
    return key


def _summary(status: MessageStatus) -> str | None:
    """The acknowledgement of a resource applied (201) or already applied (200)."""
    if status is MessageStatus.APPLIED:
        return "201 applied"
    if status is MessageStatus.DUPLICATE:
        return "200 duplicate: already applied"
    return None


def _information(text: str, severity: str = "information", code: str = "informational") -> Issue:
    return Issue(severity, code, text)


class FhirReceiver:
    """Decodes, recognises, maps and hands over; turns every outcome into a FHIR answer."""

    def __init__(self, sink: InboundSink, atomic: AtomicSink, config: FhirConfig) -> None:
        self.sink, self.atomic, self.config = sink, atomic, config
        self._log = sink if isinstance(sink, MessageLog) else None

    def handle(
        self, raw: bytes, content_type: str | None, *, client: str, expected: str | None
    ) -> Answer:
        """``expected``: the resource type the URL names (None: the base, a Bundle)."""
        answer, _ = self.handle_recorded(raw, content_type, client=client, expected=expected)
        return answer

    def handle_recorded(
        self, raw: bytes, content_type: str | None, *, client: str, expected: str | None
    ) -> tuple[Answer, MessageRecord | None]:
        """``handle``, and the message's record (None: the sink keeps no message log)."""
        record = None
        if self._log is not None:
            record = MessageRecord(
                protocol="fhir",
                connector="fhir",
                raw=raw.decode("utf-8", "replace"),
                sender=client,
                message_type=expected or "Bundle",
                media_type=(content_type or "application/fhir+json")[:64],
            )
        answer = self._handle(raw, content_type, client, expected, record)
        if record is not None:
            self._recorded(record, answer)
        return answer, record

    def _recorded(self, record: MessageRecord, answer: Answer) -> None:
        assert self._log is not None
        ack = f"{answer.status} {orjson.dumps(answer.body).decode()}"
        if record.status is None:
            duplicate = answer.status == 200 and "duplicate" in ack
            status = MessageStatus.DUPLICATE if duplicate else MessageStatus.APPLIED
            if answer.status >= 400:
                status = MessageStatus.REFUSED
                record.error = "; ".join(
                    str(i.get("diagnostics", "")) for i in answer.body.get("issue", [])
                )[:2000]
            record.ack = ack
            record.settle(status)
            self._log.record_message(record)
        elif record.status is MessageStatus.PARKED:
            self._log.record_ack(record.id, ack)

    def _handle(
        self,
        raw: bytes,
        content_type: str | None,
        client: str,
        expected: str | None,
        record: MessageRecord | None,
    ) -> Answer:
        try:
            if self.config.pseudonym_secret is None:
                raise NotConfigured(
                    "the FHIR connector has no pseudonym secret: set "
                    "MEDBRIDGE_FHIR_PSEUDONYM_SECRET (16+ characters)"
                )
            payload = decode(raw, content_type, max_bytes=self.config.max_body_bytes)
            wanted = expected or "Bundle"
            if payload.resource_type != wanted:
                raise UnsupportedResource(
                    f"the body is a {payload.resource_type}, this URL takes a {wanted}",
                    path=payload.resource_type,
                    code="invalid",
                )
            if wanted == "Bundle":
                return self._bundle(payload, client)
            resource = recognise(payload)
            if record is not None:
                record.control_id = resource.id or ""
            ctx = self._context(client)
            return self._apply(resource, map_resource(resource, ctx), ctx, client, record)
        except FhirError as error:
            log.warning(
                "fhir.refused",
                client=client,
                error=type(error).__name__,
                status=error.status,
                paths=[e for i in error.issues for e in i.expression][:10],
            )
            return Answer(error.status, error.to_operation_outcome())

    def _context(
        self,
        client: str,
        bundle: dict[str, Resource] | None = None,
        fallback_time: datetime | None = None,
    ) -> Context:
        secret = self.config.pseudonym_secret
        assert secret is not None
        return Context(
            source_system=self.config.source_system(client),
            secret=secret.get_secret_value().encode(),
            profile=self.config.profile(client),
            zone=self.config.zone,
            used_quantity_extension=self.config.used_quantity_extension,
            bundle=bundle or {},
            fallback_time=fallback_time,
        )

    # --- one resource ------------------------------------------------------------------------

    def _apply(
        self,
        resource: Resource,
        mapped: Mapped,
        ctx: Context,
        client: str,
        record: MessageRecord | None = None,
    ) -> Answer:
        rt = mapped.resource_type
        if not mapped.drafts:
            return Answer(200, operation_outcome([_information(mapped.note or "nothing to apply")]))
        key = idempotency_key(client, resource, ctx.secret)
        if record is not None:
            record.acknowledge = _summary
        receipt = self.sink.receive(
            [d.movement for d in mapped.drafts],
            source=self.config.event_source(client),
            idempotency_key=key,
            message=record,
        )
        log.info(
            "fhir.received",
            client=client,
            resource_type=rt,
            resource_id=resource.id,
            outcome=receipt.outcome.value,
            events=len(receipt.event_ids),
            exception_id=receipt.exception_id,
        )
        return self._answer(receipt, mapped, resource)

    def _answer(self, receipt: InboundReceipt, mapped: Mapped, resource: Resource) -> Answer:
        rt = mapped.resource_type
        headers = {"Location": f"{rt}/{resource.id}"} if resource.id else {}
        events = ", ".join(str(e) for e in receipt.event_ids)
        if receipt.outcome is InboundOutcome.ACCEPTED:
            text = f"applied: {len(receipt.event_ids)} stock movement(s); event ids: {events}"
            return Answer(201, operation_outcome([_information(text)]), headers)
        if receipt.outcome is InboundOutcome.DUPLICATE:
            text = (
                f"already applied (event ids: {events}): no second effect. A changed resource "
                "with the same id is not applied again"
            )
            return Answer(200, operation_outcome([_information(text, code="duplicate")]))
        if receipt.outcome is InboundOutcome.REFUSED:
            issues = [
                Issue(
                    "error",
                    "forbidden",
                    f"{p.field}: {p.reason}; nothing stored",
                    (mapped.drafts[p.index].paths.get(p.field, rt),),
                )
                for p in receipt.problems
            ]
            return Answer(403, operation_outcome(issues))
        if not receipt.problems:  # parked before, still open
            text = f"already in the exception queue as #{receipt.exception_id}, awaiting review"
            return Answer(200, operation_outcome([_information(text, "warning", "duplicate")]))
        issues = [
            Issue(
                "warning",
                "code-invalid",
                f"{p.field} {p.value!r}: {p.reason}; parked in the exception queue as "
                f"#{receipt.exception_id} for review (do not resend)",
                (mapped.drafts[p.index].paths.get(p.field, rt),),
            )
            for p in receipt.problems
        ]
        return Answer(201, operation_outcome(issues), headers)

    # --- Bundles -----------------------------------------------------------------------------

    def _bundle(self, payload: Payload, client: str) -> Answer:
        entries = list(payload.entries())
        if len(entries) > self.config.max_bundle_entries:
            raise PayloadTooLarge(
                f"{len(entries)} entries; at most {self.config.max_bundle_entries} per Bundle",
                path="Bundle.entry",
            )
        shell = recognise(
            Payload(payload.format, {**payload.data, "entry": [e for e, _ in entries]})
        )
        assert isinstance(shell, Bundle)
        if shell.type not in BUNDLE_TYPES:
            raise UnsupportedResource(
                f"a {shell.type!r} Bundle is not taken here: send a batch or a transaction",
                path="Bundle.type",
            )
        plan, lookup = self._read_entries(entries)
        ctx = self._context(client, lookup, shell.timestamp)
        mapped: list[tuple[Resource, Mapped] | FhirError | str | None] = []
        for i, item in enumerate(plan):
            if isinstance(item, Resource):
                try:
                    mapped.append((item, map_resource(item, ctx)))
                except FhirError as error:
                    mapped.append(error.within(f"Bundle.entry[{i}].resource"))
            else:
                mapped.append(item)
        if shell.type == "transaction":
            return self._transaction(mapped, client)
        answers = [self._entry_answer(i, m, ctx, client) for i, m in enumerate(mapped)]
        log.info("fhir.batch", client=client, entries=len(mapped))
        return Answer(200, _response_bundle("batch-response", answers))

    def _read_entries(
        self, entries: list[tuple[dict[str, Any], Payload | None]]
    ) -> tuple[list[Resource | FhirError | str | None], dict[str, Resource]]:
        """Per entry: the R4 resource to map, the error, or the type ignored (str)."""
        plan: list[Resource | FhirError | str | None] = []
        lookup: dict[str, Resource] = {}
        for i, (shell, inner) in enumerate(entries):
            where = f"Bundle.entry[{i}].resource"
            method = str((shell.get("request") or {}).get("method") or "POST").upper()
            if inner is None:
                plan.append(UnsupportedResource("an entry without a resource", path=where))
                continue
            rt = inner.resource_type
            if rt not in CONSUMED + CONTEXT_TYPES:
                plan.append(rt)  # not read at all: Patient, Encounter ... never enter MedBridge
                continue
            try:
                resource = recognise(inner)
            except FhirError as error:
                plan.append(error.within(where))
                continue
            for name in (shell.get("fullUrl"), f"{rt}/{resource.id}" if resource.id else None):
                if isinstance(name, str):
                    lookup[name] = resource
            if rt in CONTEXT_TYPES:
                plan.append(rt)
            elif method not in ("POST", "PUT"):
                refused = UnsupportedResource(
                    f"{method} is not taken: send POST or PUT", path=f"Bundle.entry[{i}].request"
                )
                refused.status = 405
                plan.append(refused)
            else:
                plan.append(resource)
        return plan, lookup

    def _entry_answer(
        self,
        index: int,
        item: tuple[Resource, Mapped] | FhirError | str | None,
        ctx: Context,
        client: str,
    ) -> Answer:
        if isinstance(item, str):
            return _ignored(item)
        if isinstance(item, FhirError):
            return Answer(item.status, item.to_operation_outcome())
        assert item is not None
        resource, mapped = item
        where = f"Bundle.entry[{index}].resource"
        if not mapped.drafts:
            return Answer(200, operation_outcome([_information(mapped.note or "nothing to apply")]))
        answer = self._apply(resource, mapped, ctx, client)
        issues = [
            Issue(
                i["severity"],
                i["code"],
                i["diagnostics"],
                tuple(rebase(e, where) for e in i.get("expression", [])),
            )
            for i in answer.body["issue"]
        ]
        return Answer(answer.status, operation_outcome(issues), answer.headers)

    def _transaction(
        self, mapped: list[tuple[Resource, Mapped] | FhirError | str | None], client: str
    ) -> Answer:
        errors = [m for m in mapped if isinstance(m, FhirError)]
        if errors:
            statuses = {e.status for e in errors}
            status = statuses.pop() if len(statuses) == 1 else 400
            issues = [i for e in errors for i in e.issues]
            raise _combined(status, issues, "transaction refused, nothing stored")
        secret = self.config.pseudonym_secret
        assert secret is not None
        work = [
            (i, m[0], m[1]) for i, m in enumerate(mapped) if isinstance(m, tuple) and m[1].drafts
        ]
        messages = [
            SourceMessage(
                [d.movement for d in m.drafts],
                idempotency_key(client, r, secret.get_secret_value().encode()),
            )
            for _, r, m in work
        ]
        result = self.atomic.receive_all(messages, source=self.config.event_source(client))
        if result.unresolved:
            issues = []
            for n, problem in result.unresolved:
                index, _, m = work[n]
                path = (
                    m.drafts[problem.index].paths.get(problem.field) if problem.index >= 0 else None
                )
                where = f"Bundle.entry[{index}].resource"
                issues.append(
                    Issue(
                        "error",
                        "forbidden" if result.refused else "code-invalid",
                        f"{problem.field} {problem.value!r}: {problem.reason}",
                        (rebase(path, where) if path else where,),
                    )
                )
            if result.refused:
                raise _combined(403, issues, "transaction refused, nothing stored")
            raise _combined(422, issues, "transaction refused, nothing stored")
        answers: list[Answer] = []
        receipts = iter(result.receipts)
        done = {i: (r, m) for i, r, m in work}
        for i, item in enumerate(mapped):
            if i in done:
                resource, entry = done[i]
                answers.append(self._answer(next(receipts), entry, resource))
            elif isinstance(item, str):
                answers.append(_ignored(item))
            else:
                assert isinstance(item, tuple)
                note = item[1].note or "nothing to apply"
                answers.append(Answer(200, operation_outcome([_information(note)])))
        log.info("fhir.transaction", client=client, entries=len(mapped), applied=len(work))
        return Answer(200, _response_bundle("transaction-response", answers))


def _ignored(resource_type: str) -> Answer:
    text = f"{resource_type} ignored: MedBridge takes {', '.join(CONSUMED)} (others give context)"
    return Answer(200, operation_outcome([_information(text)]))


def _combined(status: int, issues: list[Issue], head: str | None = None) -> FhirError:
    if head is not None:
        issues = [Issue("error", "processing", head), *issues]
    error = UnmappableResource(head or issues[0].diagnostics, issues=issues)
    error.status = status
    return error


def _response_bundle(kind: str, answers: list[Answer]) -> dict[str, Any]:
    entries = []
    for answer in answers:
        response: dict[str, Any] = {
            "status": f"{answer.status} {HTTPStatus(answer.status).phrase}",
            "outcome": answer.body,
        }
        if "Location" in answer.headers:
            response["location"] = answer.headers["Location"]
        entries.append({"response": response})
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
