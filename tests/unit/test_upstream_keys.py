"""Each upstream gets its own key and nothing else, under every function's settings that carry it.

The settings of a function are composed of parts; a model that carries both upstreams once sent the
Alchemy key to Neynar (two mixins defined ``resolve_api_key`` and the method order picked Alchemy's).
These tests build every settings model of every function from one environment in which the two keys
differ, and check the exact key each client sends.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from such_market.config import FunctionSettings, load_settings
from such_market.container import close_all
from such_market.upstream.alchemy import AlchemyClient
from such_market.upstream.alchemy_settings import AlchemySettings
from such_market.upstream.neynar import NeynarClient
from such_market.upstream.neynar_settings import NeynarSettings

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
ALCHEMY_KEY = "alchemy-key-0123456789"
NEYNAR_KEY = "neynar-key-9876543210"
CONTRACT = "0x" + "ab" * 20


def _all_settings_models() -> list[type[FunctionSettings]]:
    for handler in sorted(FUNCTIONS.glob("*/*.py")):
        importlib.import_module(handler.stem)  # defines and imports every function's settings model
    found: list[type[FunctionSettings]] = []
    pending = list(FunctionSettings.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    return sorted(found, key=lambda model: model.__name__)


MODELS = _all_settings_models()
WITH_ALCHEMY = [m for m in MODELS if AlchemySettings in m.parts().values()]
WITH_NEYNAR = [m for m in MODELS if NeynarSettings in m.parts().values()]


@pytest.fixture(autouse=True)
def full_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every variable any function needs, with the two upstream keys different."""
    for name in ("ALCHEMY_API_KEY_SECRET_ARN", "NEYNAR_API_KEY_SECRET_ARN", "DB_SECRET_ARN", "ADMIN_TOKEN_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "DATABASE_URL": "postgresql://localhost/db",
        "REDIS_URL": "redis://localhost:6379/0",
        "ADMIN_TOKEN": "an-admin-token-of-enough-length",
        "ALCHEMY_WEBHOOK_SIGNING_KEY": "webhook-signing-key",
        "ALCHEMY_API_KEY": ALCHEMY_KEY,
        "NEYNAR_API_KEY": NEYNAR_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    close_all()
    yield
    close_all()


def test_the_models_are_found() -> None:
    names = {model.__name__ for model in MODELS}
    assert {"ReadPathSettings", "UsersSettings", "OwnershipActionsSettings", "VerifyOwnershipSettings"} <= names
    assert {model.__name__ for model in WITH_NEYNAR} == {"UsersSettings", "MiniAppWebhookSettings"}


@pytest.mark.parametrize("model", WITH_ALCHEMY, ids=lambda model: model.__name__)
def test_alchemy_gets_the_alchemy_key(model: type[FunctionSettings]) -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"address": CONTRACT, "tokenType": "ERC721"})

    settings = load_settings(model).part(AlchemySettings)
    with AlchemyClient.from_settings(settings, transport=httpx.MockTransport(answer)) as client:
        client.get_contract_metadata(contract=CONTRACT)
    (request,) = requests
    assert request.url.path == f"/nft/v3/{ALCHEMY_KEY}/getContractMetadata"
    assert NEYNAR_KEY not in str(request.url)
    assert NEYNAR_KEY not in str(request.headers)


@pytest.mark.parametrize("model", WITH_NEYNAR, ids=lambda model: model.__name__)
def test_neynar_gets_the_neynar_key(model: type[FunctionSettings]) -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"users": []})

    settings = load_settings(model).part(NeynarSettings)
    with NeynarClient.from_settings(settings, transport=httpx.MockTransport(answer)) as client:
        client.get_user(fid=1)
    (request,) = requests
    assert request.headers["x-api-key"] == NEYNAR_KEY
    assert ALCHEMY_KEY not in str(request.url)
    assert ALCHEMY_KEY not in str(request.headers)
