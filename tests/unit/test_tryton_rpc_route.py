"""Where the Tryton adapter sends its JSON-RPC, per Tryton series (measured on the peers:
7.0 serves ``<url>/<db>/``, 8.0 ``<url>/<db>/rpc/``, each refusing the other's route)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from medbridge.connectors.tryton.config import RpcRoute, TrytonConfig
from medbridge.runtime.adapters import tryton_config
from medbridge.settings import Settings


def config(**more: object) -> TrytonConfig:
    return TrytonConfig(
        url="http://127.0.0.1:8000/",
        database="erp",
        password=SecretStr("x"),
        **more,  # type: ignore[arg-type]
    )


def test_the_default_route_is_tryton_7s() -> None:
    assert config().rpc_url == "http://127.0.0.1:8000/erp/"


def test_the_rpc_route_is_tryton_8s() -> None:
    assert config(rpc_route=RpcRoute.DATABASE_RPC).rpc_url == "http://127.0.0.1:8000/erp/rpc/"


@pytest.mark.parametrize(
    ("series", "route"),
    [("7.0", RpcRoute.DATABASE), ("7.8", RpcRoute.DATABASE), ("8.0", RpcRoute.DATABASE_RPC)],
)
def test_route_for_series(series: str, route: RpcRoute) -> None:
    assert RpcRoute.for_series(series) is route


def test_settings_choose_the_route() -> None:
    settings = Settings(
        erp_url="http://127.0.0.1:8000/",
        erp_database="erp",
        erp_password=SecretStr("x"),
        erp_rpc_route="database-rpc",
    )
    built = tryton_config(settings)
    assert built is not None
    assert built.rpc_url == "http://127.0.0.1:8000/erp/rpc/"
