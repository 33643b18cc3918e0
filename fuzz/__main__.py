"""``python -m fuzz``: the parsers under generated hostile input, on every core.

Prints per parser: inputs, accepted, typed rejections, untyped exceptions, slow inputs and the
slowest input's time; writes every finding (with its input) to ``--out`` as JSON lines and
exits 1 if there is any untyped exception or any input slower than one second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from fuzz.runner import SLOW_SECONDS, Stats, generate, run_one, run_slice
from fuzz.targets import TARGETS

WEIGHTS = {"hl7v2": 0.22, "x12": 0.18, "cxml": 0.14, "fhir": 0.10, "gs1": 0.18, "csv": 0.18}
"""Shares of the total: FHIR validation costs ~20x an HL7 parse, so it gets fewer (still
100,000 of a million)."""
SLICE = 5_000


def _plan(total: int, targets: list[str]) -> dict[str, int]:
    weight = sum(WEIGHTS[t] for t in targets)
    counts = {t: int(total * WEIGHTS[t] / weight) + 1 for t in targets}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total over all parsers")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--only", action="append", choices=sorted(TARGETS))
    parser.add_argument("--out", type=Path, default=Path("var/fuzz-findings.jsonl"))
    parser.add_argument("--replay", metavar="TARGET:INDEX", help="run one input and show it")
    args = parser.parse_args(argv)
    if args.replay:
        return _replay(args.replay, args.seed)

    targets = args.only or list(TARGETS)
    plan = _plan(args.inputs, targets)
    jobs = [
        (t, args.seed, start, min(start + SLICE, count))
        for t, count in plan.items()
        for start in range(0, count, SLICE)
    ]
    totals = {t: Stats(t) for t in targets}
    started = time.monotonic()
    print(f"fuzzing {sum(plan.values()):,} inputs on {args.workers} processes, seed {args.seed}")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for stats in pool.map(_run, jobs):
            totals[stats.target].merge(stats)
    elapsed = time.monotonic() - started

    findings = [f for s in totals.values() for f in s.findings]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for finding in findings:
            out.write(json.dumps(finding.as_dict()) + "\n")
    _print(totals, elapsed)
    bad = sum(s.untyped + s.slow for s in totals.values())
    if bad:
        print(f"\nFAILED: {bad} finding(s); inputs in {args.out}")
        for finding in findings[:10]:
            print(f"  {finding.target}:{finding.index} {finding.kind}: {finding.detail}")
        return 1
    print(f"\nOK: no untyped exception, no input over {SLOW_SECONDS:.0f} s")
    return 0


def _run(job: tuple[str, int, int, int]) -> Stats:
    return run_slice(*job)


def _print(totals: dict[str, Stats], elapsed: float) -> None:
    header = f"{'parser':<8}{'inputs':>11}{'accepted':>11}{'typed':>11}{'untyped':>9}"
    print(f"\n{header}{'slow':>6}{'slowest':>11}")
    for s in totals.values():
        print(
            f"{s.target:<8}{s.inputs:>11,}{s.accepted:>11,}{s.rejected:>11,}{s.untyped:>9,}"
            f"{s.slow:>6}{s.slowest * 1000:>9.1f}ms"
        )
    total = sum(s.inputs for s in totals.values())
    untyped = sum(s.untyped for s in totals.values())
    print(f"{'total':<8}{total:>11,}{'':>22}{untyped:>9,}   in {elapsed:.0f} s")


def _replay(where: str, seed: int) -> int:
    target, _, index = where.partition(":")
    data = generate(target, seed, int(index))
    print(repr(data[:2000]))
    stats = Stats(target)
    run_one(target, data, stats, int(index))
    for finding in stats.findings:
        print(finding.detail)
    return 1 if stats.findings else 0


if __name__ == "__main__":
    sys.exit(main())
