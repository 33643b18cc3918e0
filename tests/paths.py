"""Where the shared samples are: ``MEDBRIDGE_SHARED_DIR``, else the nearest ``shared/``
folder above the checkout (CI clones the project beside ``shared/``)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def _shared() -> Path:
    if os.environ.get("MEDBRIDGE_SHARED_DIR"):
        return Path(os.environ["MEDBRIDGE_SHARED_DIR"])
    for parent in HERE.parents:
        candidate = parent / "shared"
        if (candidate / "samples").is_dir():
            return candidate
    raise RuntimeError("no shared/samples above the checkout: set MEDBRIDGE_SHARED_DIR")


SHARED = _shared()
SAMPLES = SHARED / "samples"
