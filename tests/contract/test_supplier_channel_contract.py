"""One contract for every ``SupplierChannel``: the X12 folder channel, the cXML HTTP channel
(against a real HTTP server playing the supplier's endpoint) and the supplier simulator.

- ``send`` returns a receipt in the partner's wire format naming the control it was sent
  under; what the partner receives reads back as exactly the order sent;
- a retry with the same control reaches the partner under the same identity (so the partner
  can recognise the duplicate);
- a partner the channel cannot reach by its configuration is a permanent ``ChannelError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from medbridge.canonical.partners import OwnIdentity, TradingPartner, WireFormat
from medbridge.canonical.trade import (
    OrderDocument,
    OrderLine,
    PartnerItem,
    Party,
    PartyRole,
)
from medbridge.connectors.cxml import parse as parse_cxml
from medbridge.connectors.x12 import parse_interchange
from medbridge.demo.supplier_simulator import SimulatedSupplier
from medbridge.flows.cxml_exchange import CxmlHttpChannel
from medbridge.flows.trade import Answer, ChannelError, SupplierChannel
from medbridge.flows.x12_exchange import X12FolderChannel

OWN = OwnIdentity(x12_id="HOSPITAL", cxml_identity="HOSPITAL")
ORDER = OrderDocument(
    order_number="PO-2026-0042",
    order_date=date(2026, 11, 20),
    parties=(
        Party(role=PartyRole.BUYER, id="H1", name="General Hospital"),
        Party(role=PartyRole.SHIP_TO, id="0614141000005", name="Central pharmacy dock"),
    ),
    lines=(
        OrderLine(
            line_number=1,
            item=PartnerItem(supplier_part="GZ-10", gtin="00387698433521", description="Gauze"),
            quantity=Decimal(12),
            unit="BX",
            unit_price=Decimal("4.25"),
            requested_delivery=date(2026, 11, 24),
        ),
        OrderLine(
            line_number=2,
            item=PartnerItem(ndc="00409490234", description="Heparin 5000 U/mL"),
            quantity=Decimal("2.5"),
            unit="CA",
            unit_price=Decimal("118.0000"),
        ),
    ),
)


@dataclass
class Setup:
    channel: SupplierChannel
    partner: TradingPartner
    received: Callable[[], list[tuple[str, OrderDocument]]]
    """(wire identity, order) for everything the partner got, in order."""
    unreachable: TradingPartner


class SupplierEndpoint(BaseHTTPRequestHandler):
    """A supplier's cXML endpoint (a real HTTP server), answering 200 to every OrderRequest."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append(body)
        reply = (
            b'<?xml version="1.0"?><cXML payloadID="x@s" timestamp="2026-11-20T00:00:00+00:00">'
            b'<Response><Status code="200" text="OK"/></Response></cXML>'
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def x12_folder(tmp_path: Path) -> Iterator[Setup]:
    partner = TradingPartner(code="SUP", x12_id="SUPPLIER", outbound_folder=tmp_path / "out")

    def received() -> list[tuple[str, OrderDocument]]:
        out = []
        for path in sorted((tmp_path / "out").glob("*.x12")):
            parsed = parse_interchange(path.read_bytes())
            [order] = parsed.documents
            assert isinstance(order, OrderDocument)
            out.append((parsed.interchange.control_number, order))
        return out

    unreachable = partner.model_copy(update={"outbound_folder": None})
    yield Setup(X12FolderChannel(OWN), partner, received, unreachable)


def cxml_http(tmp_path: Path) -> Iterator[Setup]:
    SupplierEndpoint.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SupplierEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    partner = TradingPartner(
        code="SUP",
        wire_format=WireFormat.CXML,
        cxml_identity="SUPPLIER",
        cxml_shared_secret=SecretStr("s3cret"),
        cxml_url=f"http://127.0.0.1:{server.server_address[1]}/cxml",
    )

    def received() -> list[tuple[str, OrderDocument]]:
        out = []
        for body in SupplierEndpoint.bodies:
            message = parse_cxml(body)
            assert isinstance(message.document, OrderDocument)
            assert message.envelope.shared_secret == "s3cret"
            out.append((message.envelope.payload_id, message.document))
        return out

    try:
        unreachable = partner.model_copy(update={"cxml_url": None})
        yield Setup(CxmlHttpChannel(OWN, timeout=5), partner, received, unreachable)
    finally:
        server.shutdown()
        server.server_close()


def simulator(wire: WireFormat) -> Callable[[Path], Iterator[Setup]]:
    def make(tmp_path: Path) -> Iterator[Setup]:
        partner = TradingPartner(
            code="SUP",
            wire_format=wire,
            x12_id="SUPPLIER",
            cxml_identity="SUPPLIER",
            cxml_shared_secret=SecretStr("s3cret"),
        )
        sim = SimulatedSupplier(OWN, lambda wire, body: Answer(200, ""), shared_secret="s3cret")
        if wire is WireFormat.CXML:  # the supplier does not know this secret
            unreachable = partner.model_copy(update={"cxml_shared_secret": SecretStr("wrong")})
        else:  # a partner without its X12 id (as a partner edited in a hurry may be)
            unreachable = TradingPartner.model_construct(**{**dict(partner), "x12_id": None})
        yield Setup(sim, partner, lambda: list(sim.received), unreachable)

    return make


SETUPS = {
    "x12-folder": x12_folder,
    "cxml-http": cxml_http,
    "simulator-x12": simulator(WireFormat.X12),
    "simulator-cxml": simulator(WireFormat.CXML),
}


@pytest.fixture(params=sorted(SETUPS))
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    yield from SETUPS[request.param](tmp_path)


def test_what_the_partner_receives_is_the_order(setup: Setup) -> None:
    receipt = setup.channel.send(ORDER, partner=setup.partner, control=41)
    assert receipt.wire_format == setup.partner.wire_format.value
    assert "000000041" in receipt.control
    [(identity, order)] = setup.received()
    assert order == ORDER
    assert identity == receipt.control


def test_a_retry_reaches_the_partner_under_the_same_identity(setup: Setup) -> None:
    first = setup.channel.send(ORDER, partner=setup.partner, control=7)
    again = setup.channel.send(ORDER, partner=setup.partner, control=7)
    other = setup.channel.send(
        ORDER.model_copy(update={"order_number": "PO-2026-0043"}), partner=setup.partner, control=8
    )
    assert first.control == again.control != other.control
    identities = [identity for identity, _ in setup.received()]
    assert identities[0] == first.control
    assert identities[-1] == other.control
    assert set(identities) == {first.control, other.control}, "the retry is no new identity"


def test_a_partner_it_cannot_reach_is_a_permanent_error(setup: Setup) -> None:
    with pytest.raises(ChannelError) as refused:
        setup.channel.send(ORDER, partner=setup.unreachable, control=9)
    assert refused.value.permanent
