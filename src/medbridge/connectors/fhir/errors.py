"""FHIR connector errors, each answered as an ``OperationOutcome`` with the HTTP status and
issue code FHIR prescribes, and ``expression`` = the FHIRPath of the problem.

FhirError                          HTTP  issue code
 +-- NotConfigured                 503   exception       no pseudonym secret configured
 +-- PayloadTooLarge               413   too-costly      body over ``max_body_bytes``
 +-- UnsupportedMediaType          415   not-supported   not fhir+json / json / fhir+xml
 +-- MalformedPayload              400   structure       not JSON, not well-formed XML, no resource
 |    +-- UnsafeXml                400   security        DOCTYPE / entity declarations
 +-- InvalidResource               400   structure       fails FHIR R4 (R4B model) validation
 |    +-- WrongFhirVersion         400   not-supported   recognised as STU3 or R5, says which
 +-- UnsupportedResource           400   not-supported   type does not match the URL, Bundle type
 |                                                        or entry method not taken here
 +-- UnmappableResource            422   required/value/business-rule: valid R4, but not a stock
                                                          movement MedBridge can read (no location,
                                                          no time, no quantity, an un-reversible
                                                          entered-in-error ...)

Diagnostics never quote an input value (pydantic messages that do are redacted): a value
could be a patient's name or birth date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue``."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/issue-type
    diagnostics: str
    expression: tuple[str, ...] = ()

    def as_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue

    def rebased(self, prefix: str) -> Issue:
        return replace(self, expression=tuple(rebase(e, prefix) for e in self.expression))


def rebase(path: str, prefix: str) -> str:
    """``MedicationDispense.location`` inside ``Bundle.entry[2].resource`` ->
    ``Bundle.entry[2].resource.location``."""
    head, dot, rest = path.partition(".")
    if head and head[0].isupper():
        return f"{prefix}{dot}{rest}" if rest else prefix
    return f"{prefix}.{path}"


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


class FhirError(Exception):
    status = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        issues: Sequence[Issue] = (),
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        if code is not None:
            self.code = code
        self.issues: tuple[Issue, ...] = tuple(issues) or (
            Issue("error", self.code, message, (path,) if path else ()),
        )

    def within(self, prefix: str) -> FhirError:
        """The same error, its paths re-rooted under ``prefix`` (a Bundle entry)."""
        moved = type(self).__new__(type(self))
        moved.__dict__.update(self.__dict__)
        moved.args = self.args
        moved.issues = tuple(i.rebased(prefix) for i in self.issues)
        moved.path = rebase(self.path, prefix) if self.path else prefix
        return moved

    def to_operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class NotConfigured(FhirError):
    status = 503
    code = "exception"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class MalformedPayload(FhirError):
    status = 400
    code = "structure"


class UnsafeXml(MalformedPayload):
    code = "security"


class InvalidResource(FhirError):
    status = 400
    code = "structure"


class WrongFhirVersion(InvalidResource):
    code = "not-supported"

    def __init__(self, message: str, *, version: str, issues: Sequence[Issue] = ()) -> None:
        super().__init__(message, issues=issues)
        self.version = version


class UnsupportedResource(FhirError):
    status = 400
    code = "not-supported"


class UnmappableResource(FhirError):
    status = 422
    code = "required"
