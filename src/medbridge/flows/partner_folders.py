"""Watched folders per trading partner: files the partner drops (X12 interchanges) in its
``inbound_folder`` are received exactly like ``POST /v1/edi/x12`` bodies; the answer (the 997)
is written to its ``outbound_folder``, where MedBridge also writes the documents it sends.

A received file moves to ``<inbound>/processed/``; a refused one to ``<inbound>/rejected/``
with ``<file>.reason.txt`` beside it. The answer is written first (to a hidden temporary name,
then renamed), the file is moved last: a crash in between leaves the file in place, and
receiving it again answers from the record and applies nothing twice. Hidden files
(``.name``) are ignored, so a partner may write to a hidden name and rename when done.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from medbridge.canonical.partners import TradingPartner
from medbridge.flows.trade import Answer
from medbridge.observability.logging import get_logger

log = get_logger(__name__)

Receive = Callable[[TradingPartner, bytes], Answer]
ANSWER_SUFFIX = ".997.x12"
"""``asn1.edi`` is answered by ``asn1.997.x12`` in the partner's outbound folder."""


def write_atomically(folder: Path, name: str, body: bytes) -> Path:
    """Write ``folder/name`` so that a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.part"
    with open(temporary, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    target = folder / name
    os.replace(temporary, target)
    return target


@dataclass(frozen=True)
class FileOutcome:
    partner: str
    file: str
    status: int
    answer_file: str | None


class PartnerFolders:
    def __init__(self, partners: Iterable[TradingPartner], receive: Receive) -> None:
        self.partners = [p for p in partners if p.inbound_folder is not None]
        self.receive = receive

    def scan(self) -> list[FileOutcome]:
        outcomes = []
        for partner in self.partners:
            assert partner.inbound_folder is not None
            folder = partner.inbound_folder
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(p for p in folder.iterdir() if p.is_file()):
                if not path.name.startswith("."):
                    outcomes.append(self._one(partner, path))
        return outcomes

    def _one(self, partner: TradingPartner, path: Path) -> FileOutcome:
        raw = path.read_bytes()
        answer = self.receive(partner, raw)
        answer_file = None
        if answer.body and partner.outbound_folder is not None:
            name = f"{path.stem}{ANSWER_SUFFIX}"
            answer_file = write_atomically(partner.outbound_folder, name, answer.body.encode()).name
        accepted = 200 <= answer.status < 300
        target_folder = path.parent / ("processed" if accepted else "rejected")
        target_folder.mkdir(exist_ok=True)
        target = target_folder / path.name
        if target.exists():  # the same name sent again: keep both
            digest = hashlib.sha256(raw).hexdigest()[:12]
            target = target.with_name(f"{path.stem}.{digest}{path.suffix}")
        if not accepted:
            write_atomically(
                target_folder,
                f"{target.name}.reason.txt",
                f"{answer.status}\n{answer.body}".encode(),
            )
        os.replace(path, target)
        log.info(
            "partner_folder.received",
            partner=partner.code,
            file=path.name,
            status=answer.status,
            duplicate=answer.duplicate,
        )
        return FileOutcome(partner.code, path.name, answer.status, answer_file)

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.scan()
            except Exception:  # the database or the disk: the files stay, next scan retries
                log.exception("partner_folder.scan_failed")
            stop.wait(interval)
