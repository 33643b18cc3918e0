"""A bounded pass of ``make fuzz`` per parser: a few thousand generated hostile inputs each
(mutated samples and grammar-built messages, seeded: the same inputs every run), and not one
may escape as anything but the parser's typed error. ``make fuzz`` runs a million."""

from __future__ import annotations

import pytest
from fuzz.runner import run_slice
from fuzz.targets import TARGETS

INPUTS = {"hl7v2": 2000, "x12": 2000, "cxml": 1500, "fhir": 500, "gs1": 2000, "csv": 3000}
SEED = 2026  # not make fuzz's: the two passes cover different inputs


def test_every_parser_is_fuzzed() -> None:
    assert set(INPUTS) == set(TARGETS) == {"hl7v2", "x12", "cxml", "fhir", "gs1", "csv"}


@pytest.mark.parametrize("target", sorted(INPUTS))
def test_no_generated_input_escapes_as_an_untyped_exception(target: str) -> None:
    stats = run_slice(target, SEED, 0, INPUTS[target])
    findings = [f"{f.target}:{f.index} {f.detail}" for f in stats.findings if f.kind == "untyped"]
    assert stats.untyped == 0, findings
    assert stats.inputs == INPUTS[target]
    # the generator reaches both sides: some inputs are accepted, most refused (typed)
    assert stats.accepted > 0
    assert stats.rejected > stats.inputs // 4


def test_a_finding_is_reported_with_its_input() -> None:
    """The harness counts an escaping exception as untyped (so that the test above can fail)."""
    from fuzz import runner
    from fuzz.targets import Target

    def explode(data: bytes) -> bool:
        raise IndexError("string index out of range")

    runner.TARGETS["broken"] = Target("broken", TARGETS["gs1"].generate, explode)
    try:
        stats = run_slice("broken", SEED, 0, 3)
    finally:
        del runner.TARGETS["broken"]
    assert (stats.untyped, stats.accepted, stats.rejected) == (3, 0, 0)
    assert stats.findings[0].data
    assert "IndexError" in stats.findings[0].detail
