"""Schemathesis over the committed OpenAPI document, against the local API over HTTP: every check.

Every operation of ``openapi.json`` is fuzzed (schemathesis's examples, coverage and fuzzing phases,
positive and negative inputs) against the real handlers served by ``LocalApi`` from template.yaml,
with a real PostgreSQL, Valkey and the Alchemy and Neynar stubs behind them. One small indexed
collection is seeded, and the generated path and query parameters are mixed with known values (that
collection, the Alchemy stub's contracts, the Neynar stub's fids, a holder) so that some requests reach
real data and not only the 400/404 paths. Admin routes get the admin bearer token. Webhook POSTs are
never signed here, so each must answer 401.

Every answer goes through all of schemathesis's checks (what ``schemathesis run openapi.json --checks all``
runs): no 5xx, every status, header and body as declared, every schema-valid request accepted and every
schema-invalid one rejected, auth enforced where declared. One check is left out, by name:
``unsupported_method`` expects 405 for a method the document does not list, but API Gateway's HTTP API
answers 404 ``{"message": "Not Found"}`` to any method no route serves, before any function runs; the local
API does the same, and the document's description says so. The CLI equivalent::

    schemathesis run openapi.json --url http://127.0.0.1:3000 --checks all \
        --exclude-checks unsupported_method -H "Authorization: Bearer <token printed by make dev>"

The runs are bounded (``max_examples`` per operation) and derandomized so CI sees the same requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import jsonschema_rs
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from local.alchemy_stub import ERC721_CONTRACT, ERC1155_CONTRACT, NOT_A_CONTRACT, wallet_address
from local.api import LocalApi
from local.invoker import Invoker
from local.template import Template
from tests.conftest import ADMIN_TOKEN, MotoBus
from tests.fixtures.seed import COLORS, seed_indexed_collection

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 20
WEBHOOK = ("POST", "/api/webhooks/alchemy")

SEEDED = "0x" + "5e" * 20
HOLDER = "0x" + "11" * 20
OTHER_HOLDER = "0x" + "22" * 20
SEEDED_TOKENS = 30

# Values that reach real data, mixed into what schemathesis generates for these path parameters.
KNOWN_PATH_VALUES: dict[str, tuple[str, ...] | tuple[int, ...]] = {
    "contractAddress": (SEEDED, "0x" + SEEDED[2:].upper(), ERC721_CONTRACT, ERC1155_CONTRACT, NOT_A_CONTRACT),
    "tokenId": ("0", "3", "0x3", "87", "1", "9999", "0x" + "f" * 64),
    "fid": (1, 2, 5, 50, 51),
}
# ...and for these query parameters (the trait filter's real form is ``trait.<type>=<value>``).
KNOWN_QUERY_VALUES: dict[str, dict[str, Any]] = {
    "userAddress": {"userAddress": st.sampled_from((HOLDER, OTHER_HOLDER, wallet_address(1), wallet_address(7)))},
    "traitFilters": {"trait.Color": st.sampled_from((*COLORS, "Red,Blue", "Nope")), "trait.Size": st.just("S")},
}

EXCLUDED_CHECKS = {
    # API Gateway answers 404 {"message": "Not Found"} to a method no route serves, never 405 (see above).
    "unsupported_method",
}
load_all_checks()
CHECKS_RUN = [check for check in CHECKS.get_all() if getattr(check, "__name__", "") not in EXCLUDED_CHECKS]

# The document declares the formats of addresses, token ids and fids. These examples (the seeded collection,
# one of its tokens, a holder, a fid of the Neynar stub) are added to this test's copy of it so that the
# examples and coverage phases, which vary one parameter at a time around a valid request, reach real data
# and not only the 404 of an address nobody knows.
PARAMETER_EXAMPLES = {
    ("path", "contractAddress"): SEEDED,
    ("path", "tokenId"): "3",
    ("path", "fid"): 1,
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
# Sent with every request, as `-H` does in the CLI; the checks know it was configured, not generated.
schema.config.update(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


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
def api_url(lambda_env: dict[str, str], db: psycopg.Connection[Any], moto_bus: MotoBus) -> Iterator[str]:
    """Base URL of the local API over the real template, with the seeded collection in its database and a
    (moto) bus, so that a route whose work goes on through an event (a performance run) can queue it."""
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
def test_every_answer_is_what_the_document_says(case: schemathesis.Case[Any], api_url: str) -> None:
    # Given any request the OpenAPI document allows (or nearly allows) for this operation
    # (admin routes get the admin token: the schema's configured headers, as ``-H`` does in the CLI)
    # When it is sent to the local API
    response = case.call(base_url=api_url, timeout=30)
    # Then it passes every check but the excluded ones: no 5xx, the declared statuses and bodies, valid
    # input accepted and invalid input rejected (and an unsigned webhook is always 401)
    case.validate_response(response, checks=CHECKS_RUN, transport_kwargs={"base_url": api_url})
    described = f"{case.as_curl_command()}\n-> {response.status_code} {response.text[:2000]}"
    if (case.method.upper(), case.path) == WEBHOOK:
        assert response.status_code == 401, described


def _trait_filters_schema() -> dict[str, Any]:
    operation = json.loads((ROOT / "openapi.json").read_text())["paths"]["/api/collection/{contractAddress}/nfts"][
        "get"
    ]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "traitFilters"]
    assert (parameter["style"], parameter["explode"]) == ("form", True)
    schema: dict[str, Any] = parameter["schema"]
    return schema


def test_an_undeclared_query_parameter_is_allowed_by_the_document_and_ignored(api_url: str) -> None:
    # Given the trait filters, an exploded object: every query name the route does not declare lands in it
    valid = jsonschema_rs.validator_for(_trait_filters_schema()).is_valid
    # Then the document allows names other than trait.<type> (API Gateway passes them on) and still
    # refuses a malformed trait filter, as the handler does
    assert valid({"utm_source": "x", "trait.Color": "Red"})
    assert valid({"utm_source": "x"})
    assert not valid({"trait.": "Red"})
    assert not valid({"trait.Color": ""})
    # And the API answers a request with an undeclared parameter as it answers it without
    page = f"/api/collection/{SEEDED}/nfts?pageSize=5&trait.Color={COLORS[0]}"
    plain = httpx.get(api_url + page, timeout=30)
    extra = httpx.get(api_url + page + "&utm_source=x&x-unknown=%00", timeout=30)
    assert plain.status_code == 200, plain.text
    assert (extra.status_code, extra.json()) == (plain.status_code, plain.json())
    refused = httpx.get(api_url + f"/api/collection/{SEEDED}/nfts?trait.=Red", timeout=30)
    assert refused.status_code == 400
