"""FHIR R4 over REST: MedicationDispense (dispense), SupplyDelivery (transfer between stores)
and Procedure (its used items: clinical consumption), alone or in batch/transaction Bundles.

``parse`` (codec: JSON or XML -> a validated R4 resource, STU3/R5 refused by name), ``map_resource``
(mapping: resource -> inbound movements in the sender's codes), ``FhirReceiver`` (inbound: one
request body -> one FHIR answer) and ``render`` (codec: an answer as JSON or XML). The HTTP
routes are ``medbridge.api.fhir``. Patient identity never leaves this package.
"""

from __future__ import annotations

from fhir.resources.R4B.resource import Resource

from medbridge.connectors.fhir.codec import Release, WireFormat, decode, recognise, render
from medbridge.connectors.fhir.config import FhirClientProfile, FhirConfig
from medbridge.connectors.fhir.errors import FhirError
from medbridge.connectors.fhir.inbound import Answer, FhirReceiver
from medbridge.connectors.fhir.mapping import map_resource

NAME = "fhir"


def parse(raw: bytes, content_type: str = "application/fhir+json") -> Resource:
    """One resource from its wire form, validated as FHIR R4; FhirError if it is not one."""
    return recognise(decode(raw, content_type, max_bytes=FhirConfig().max_body_bytes))


__all__ = [
    "NAME",
    "Answer",
    "FhirClientProfile",
    "FhirConfig",
    "FhirError",
    "FhirReceiver",
    "Release",
    "WireFormat",
    "map_resource",
    "parse",
    "render",
]
