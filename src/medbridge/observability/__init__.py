"""Observability: structured logs, metrics. Usable from every layer but canonical and domain."""
