"""Admin authentication: the authorizer function and the handler-side check of every admin route."""

from __future__ import annotations

import json

import admin_authorizer
import boto3
import cache_clear
import cache_performance
import ownership_actions
import ownership_stats
import pytest
import warm_cache
from moto import mock_aws

from such_market.auth.admin import stored_digest, token_digest
from such_market.container import close_all
from such_market.errors import ConfigurationError
from tests.conftest import ADMIN_TOKEN
from tests.functions.conftest import FakeContext, load_event

ADMIN_ROUTES = {
    "ownership_stats": ownership_stats.lambda_handler,
    "ownership_actions": ownership_actions.lambda_handler,
    "cache_clear": cache_clear.lambda_handler,
    "warm_cache": warm_cache.lambda_handler,
    "cache_performance": cache_performance.lambda_handler,
}


@pytest.mark.parametrize("name", ADMIN_ROUTES)
def test_admin_route_without_token_is_401(lambda_env: dict[str, str], context: FakeContext, name: str) -> None:
    # Given an admin request without an Authorization header
    event = load_event(f"{name}_no_token")
    # When it reaches the handler
    response = ADMIN_ROUTES[name](event, context)
    # Then it is refused with 401 and the SPEC error shape
    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"error": "admin credential required", "code": "missing_credentials"}


@pytest.mark.parametrize("name", ADMIN_ROUTES)
def test_admin_route_with_wrong_token_is_403(lambda_env: dict[str, str], context: FakeContext, name: str) -> None:
    response = ADMIN_ROUTES[name](load_event(f"{name}_wrong_token"), context)
    assert response["statusCode"] == 403
    assert json.loads(response["body"]) == {"error": "invalid admin credential", "code": "invalid_credentials"}


def test_admin_route_with_non_bearer_header_is_401(lambda_env: dict[str, str], context: FakeContext) -> None:
    event = load_event("ownership_stats")
    event["headers"]["authorization"] = "Basic dXNlcjpwYXNz"
    response = ownership_stats.lambda_handler(event, context)
    assert response["statusCode"] == 401


def test_admin_route_with_valid_token_runs(lambda_env: dict[str, str], context: FakeContext) -> None:
    response = ownership_stats.lambda_handler(load_event("ownership_stats"), context)
    assert response["statusCode"] == 200


def test_authorizer_allows_only_the_admin_token(lambda_env: dict[str, str], context: FakeContext) -> None:
    assert admin_authorizer.lambda_handler(load_event("admin_authorizer"), context) == {"isAuthorized": True}
    assert admin_authorizer.lambda_handler(load_event("admin_authorizer_wrong_token"), context) == {
        "isAuthorized": False
    }
    no_header = load_event("admin_authorizer")
    no_header["headers"].pop("authorization")
    assert admin_authorizer.lambda_handler(no_header, context) == {"isAuthorized": False}


STORED_FORMS = {
    "digest": token_digest(ADMIN_TOKEN),
    "json digest": json.dumps({"sha256": token_digest(ADMIN_TOKEN)}),
    "token": ADMIN_TOKEN,  # what the stack generates: the token itself (48 letters and digits)
    "json token": json.dumps({"token": ADMIN_TOKEN}),
}


@pytest.mark.parametrize("stored", sorted(STORED_FORMS))
def test_admin_token_from_secrets_manager(
    lambda_env: dict[str, str], context: FakeContext, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    # Given the admin token in Secrets Manager: its digest, or the token itself (hashed before comparing)
    with mock_aws():
        value = STORED_FORMS[stored]
        arn = boto3.client("secretsmanager").create_secret(Name="admin-token", SecretString=value)["ARN"]
        monkeypatch.delenv("ADMIN_TOKEN")
        monkeypatch.setenv("ADMIN_TOKEN_SECRET_ARN", arn)
        close_all()
        # When requests carry the right and a wrong token, Then only the right one passes
        assert admin_authorizer.lambda_handler(load_event("admin_authorizer"), context) == {"isAuthorized": True}
        assert admin_authorizer.lambda_handler(load_event("admin_authorizer_wrong_token"), context) == {
            "isAuthorized": False
        }
        assert ownership_stats.lambda_handler(load_event("ownership_stats"), context)["statusCode"] == 200
        wrong = load_event("ownership_stats")
        wrong["headers"]["authorization"] = "Bearer " + token_digest(ADMIN_TOKEN)  # the digest is no credential
        assert ownership_stats.lambda_handler(wrong, context)["statusCode"] == 403


def test_stored_token_forms() -> None:
    digest = token_digest(ADMIN_TOKEN)
    assert stored_digest(digest) == stored_digest(digest.upper()) == digest
    assert stored_digest(json.dumps({"sha256": digest})) == digest
    assert stored_digest(f" {ADMIN_TOKEN}\n") == stored_digest(json.dumps({"token": ADMIN_TOKEN})) == digest
    for unusable in ("tiny-token", json.dumps({"token": "tiny"}), json.dumps({"other": 1}), "{not json"):
        with pytest.raises(ConfigurationError) as error:
            stored_digest(unusable)
        assert "tiny" not in str(error.value)  # the message never quotes the secret
