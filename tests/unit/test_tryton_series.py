"""What the Tryton adapter does differently per Tryton series (measured on the peers: 7.0
serves ``<url>/<db>/``, 8.0 ``<url>/<db>/rpc/``; 8.0's incoming shipment ends with ``do``)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from medbridge.connectors.tryton.config import TrytonConfig, TrytonSeries
from medbridge.runtime.adapters import tryton_config
from medbridge.settings import Settings


def config(**more: object) -> TrytonConfig:
    return TrytonConfig(
        url="http://127.0.0.1:8000/",
        database="erp",
        password=SecretStr("x"),
        **more,  # type: ignore[arg-type]
    )


def test_the_default_is_tryton_7s_route() -> None:
    assert config().rpc_url == "http://127.0.0.1:8000/erp/"
    assert config().series.receipt_done_button == "done"


def test_tryton_8s_route_and_button() -> None:
    assert config(series=TrytonSeries.V8_0).rpc_url == "http://127.0.0.1:8000/erp/rpc/"
    assert TrytonSeries.V8_0.receipt_done_button == "do"


@pytest.mark.parametrize(
    ("version", "series"),
    [("7.0.59", TrytonSeries.V7_0), ("7.0", TrytonSeries.V7_0), ("8.0.12", TrytonSeries.V8_0)],
)
def test_series_of_a_version(version: str, series: TrytonSeries) -> None:
    assert TrytonSeries.of(version) is series


def test_settings_choose_the_series() -> None:
    settings = Settings(
        erp_url="http://127.0.0.1:8000/",
        erp_database="erp",
        erp_password=SecretStr("x"),
        erp_series="8.0",
    )
    built = tryton_config(settings)
    assert built is not None
    assert built.rpc_url == "http://127.0.0.1:8000/erp/rpc/"
