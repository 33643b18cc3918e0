"""MedBridge's parsers under hostile input: ``python -m fuzz`` (``make fuzz``).

Why a seeded mutation fuzzer of our own rather than atheris or hypothesis:

- atheris (libFuzzer) needs a compiled wheel matched to this Python and clang; it is not among
  the packages this project may install, and its coverage feedback pays off on code paths far
  deeper than a parser's refusal branches, at the price of non-reproducible runs across
  machines.
- hypothesis shrinks and explores well but runs one example at a time with heavy bookkeeping
  (~1-2 ms an example), too slow for a million inputs in a few minutes, and its database makes
  runs depend on earlier ones. It stays the tool for properties (tests/property).
- This fuzzer derives input ``i`` of a parser from ``Random(f"{seed}:{parser}:{i}")`` alone:
  a million inputs split over processes without coordination, and every finding is replayed
  from its number (``python -m fuzz --replay hl7v2:123``). Inputs are mutations of the real
  samples in ``shared/samples`` (text, structure-aware and byte-level) and grammar-built
  messages that keep envelopes and counts right so that hostile values reach the mapping, with
  a dictionary of values that broke parsers before (``mutate.HOSTILE``).
"""
