"""Schemathesis over the committed OpenAPI document, against the local API over HTTP: no 5xx.

Every operation of ``openapi.json`` is fuzzed (schemathesis's examples, coverage and fuzzing phases,
positive and negative inputs) against the real handlers served by ``LocalApi`` from template.yaml,
with a real PostgreSQL, Valkey and the Alchemy and Neynar stubs behind them. One small indexed
collection is seeded, and the generated path and query parameters are mixed with known values (that
collection, the Alchemy stub's contracts, the Neynar stub's fids, a holder) so that some requests reach
real data and not only the 400/404 paths. Admin routes get the admin bearer token. Webhook POSTs are
never signed here, so each must answer 401.

The runs are bounded (``max_examples`` per operation) and derandomized so CI sees the same requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from local.alchemy_stub import ERC721_CONTRACT, ERC1155_CONTRACT, NOT_A_CONTRACT, wallet_address
from local.api import LocalApi
from local.invoker import Invoker
from local.template import Template
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.seed import COLORS, seed_indexed_collection

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 20
WEBHOOK = ("POST", "/api/webhooks/alchemy")

SEEDED = "0x" + "5e" * 20
HOLDER = "0x" + "11" * 20
OTHER_HOLDER = "0x" + "22" * 20
SEEDED_TOKENS = 30

# Values that reach real data, mixed into what schemathesis generates for these path parameters.
KNOWN_PATH_VALUES: dict[str, tuple[str, ...]] = {
    "contractAddress": (SEEDED, "0x" + SEEDED[2:].upper(), ERC721_CONTRACT, ERC1155_CONTRACT, NOT_A_CONTRACT),
    "tokenId": ("0", "3", "0x3", "87", "1", "9999", "0x" + "f" * 64),
    "fid": ("1", "2", "5", "50", "51", "0"),
}
# ...and for these query parameters (the trait filter's real form is ``trait.<type>=<value>``).
KNOWN_QUERY_VALUES: dict[str, dict[str, Any]] = {
    "userAddress": {"userAddress": st.sampled_from((HOLDER, OTHER_HOLDER, wallet_address(1), wallet_address(7)))},
    "trait.<type>": {"trait.Color": st.sampled_from((*COLORS, "Red,Blue", "Nope")), "trait.Size": st.just("S")},
}

# Addresses, token ids and fids are plain strings in the document. These examples (the seeded collection,
# one of its tokens, a holder, a fid of the Neynar stub) are added to this test's copy of it so that the
# examples and coverage phases, which vary one parameter at a time around a valid request, get past the
# address validation and reach the query parsing and the data.
PARAMETER_EXAMPLES = {
    ("path", "contractAddress"): SEEDED,
    ("path", "tokenId"): "3",
    ("path", "fid"): "1",
    ("query", "userAddress"): HOLDER,
}


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "openapi.json").read_text())
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                example = PARAMETER_EXAMPLES.get((parameter["in"], parameter["name"]))
                if example is not None:
                    parameter["example"] = example
    return document


schema = schemathesis.openapi.from_dict(_document())


def _path_parameter_names(path: str) -> list[str]:
    return re.findall(r"{([^}]+)}", path)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """The generated path parameters, or known values of them."""
    names = _path_parameter_names(context.operation.path)
    generated = st.just(path_parameters)
    if not names:
        return generated
    return st.one_of(
        generated, st.fixed_dictionaries({name: st.sampled_from(KNOWN_PATH_VALUES[name]) for name in names})
    )


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """The generated query, or the generated query with known values added."""
    declared = {parameter.name for parameter in context.operation.query}
    known: dict[str, Any] = {}
    for name, values in KNOWN_QUERY_VALUES.items():
        if name in declared:
            known.update(values)
    generated = st.just(query)
    if not known:
        return generated
    return st.one_of(generated, st.fixed_dictionaries(known).map(lambda extra: {**(query or {}), **extra}))


@pytest.fixture
def api_url(lambda_env: dict[str, str], db: psycopg.Connection[Any]) -> Iterator[str]:
    """Base URL of the local API over the real template, with the seeded collection in its database."""
    seed_indexed_collection(
        db,
        address=SEEDED,
        tokens=SEEDED_TOKENS,
        holder=lambda index: HOLDER if index < 10 else OTHER_HOLDER,
        sizes=("S", "M", "L"),
    )
    template = Template.load(ROOT / "template.yaml")
    with LocalApi(template, Invoker(template), port=0, quiet=True) as api:
        yield api.url


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_operation_answers_a_server_error(case: schemathesis.Case[Any], api_url: str) -> None:
    # Given any request the OpenAPI document allows (or nearly allows) for this operation
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if case.operation.definition.raw.get("security") else {}
    # When it is sent to the local API
    response = case.call(base_url=api_url, headers=headers, timeout=30)
    # Then the answer is never a 5xx (and an unsigned webhook is always 401)
    described = f"{case.as_curl_command(headers=headers)}\n-> {response.status_code} {response.text[:2000]}"
    assert response.status_code < 500, described
    if (case.method.upper(), case.path) == WEBHOOK:
        assert response.status_code == 401, described
