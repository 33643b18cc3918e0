"""Data minimisation per consumer: which fields of which answers a client may read.

Two rules, applied in ONE place (``api.minimise.Minimise``, on every JSON answer to a GET):

- protected fields need a permission wherever they appear, at any depth: ``encounter_ref``
  (an encounter pseudonym) needs ``encounters:read``, which no reading or auditing role has;
- a client may have its own policy (``client_data_policies`` in the settings): per route
  (``/v1/journal-entries``) or ``*`` for every route, the fields it never receives, e.g.
  ``{"bi-warehouse": {"*": ["correlation_id"], "/v1/stock": ["lot"]}}``.

A field removed is removed, not blanked: the answer looks as if the field did not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from medbridge.governance.permissions import Permission, Principal

PROTECTED: Final[Mapping[str, Permission]] = {"encounter_ref": Permission.ENCOUNTERS_READ}
EVERY_ROUTE: Final = "*"


class DataPolicy:
    def __init__(self, per_client: Mapping[str, Mapping[str, list[str]]] | None = None) -> None:
        self._per_client = {
            client: {route: frozenset(fields) for route, fields in routes.items()}
            for client, routes in (per_client or {}).items()
        }

    def hidden(self, principal: Principal, route: str) -> frozenset[str]:
        """The field names ``principal`` may not receive in the answers of ``route``."""
        hidden = frozenset(f for f, needed in PROTECTED.items() if not principal.may(needed))
        own = self._per_client.get(principal.name)
        if own:
            hidden |= own.get(EVERY_ROUTE, frozenset()) | own.get(route, frozenset())
        return hidden


def without(value: Any, hidden: frozenset[str]) -> tuple[Any, bool]:
    """``value`` with every key in ``hidden`` removed at any depth, and whether any was."""
    if isinstance(value, dict):
        changed = False
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if key in hidden:
                changed = True
                continue
            kept[key], inner = without(item, hidden)
            changed = changed or inner
        return kept, changed
    if isinstance(value, list):
        items = [without(item, hidden) for item in value]
        return [item for item, _ in items], any(inner for _, inner in items)
    return value, False
