"""The cache client authenticates as the user its AUTH secret names: an ElastiCache RBAC user
(``{"username", "password"}``, what the stack creates) or a plain AUTH token, on a real Valkey with ACL users,
standalone and cluster."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import redis

from local.secrets_extension import SecretsExtension
from such_market.cache.client import build_client, credentials
from such_market.config import CacheSettings
from such_market.container import close_all
from such_market.errors import ConfigurationError

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:such-market-cache-auth-AbCdEf"
TOKEN = "session-token-of-this-container"


@pytest.fixture
def acl_user(any_cache: tuple[str, bool]) -> Iterator[tuple[str, str]]:
    """A fresh ACL user (name, password) on every node of the cache; deleted afterwards."""
    url, cluster = any_cache
    admin: redis.Redis | redis.RedisCluster = redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    name, password = f"such-market-{secrets.token_hex(4)}", secrets.token_hex(16)
    nodes = {"target_nodes": redis.RedisCluster.ALL_NODES} if cluster else {}
    admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "+@all", **nodes)
    try:
        yield name, password
    finally:
        admin.execute_command("ACL", "DELUSER", name, **nodes)
        admin.close()


@pytest.fixture
def auth_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsExtension]:
    """The secrets extension's stand-in serving the cache's AUTH secret (its value set by each test)."""
    with SecretsExtension(token=TOKEN) as extension:
        for name, value in extension.lambda_environment().items():
            monkeypatch.setenv(name, value)
        close_all()
        yield extension
    close_all()


def _client(any_cache: tuple[str, bool]) -> redis.Redis | redis.RedisCluster:
    url, cluster = any_cache
    return build_client(CacheSettings(redis_url=url, redis_cluster=cluster, redis_auth_secret_arn=SECRET_ARN))


def _ping(any_cache: tuple[str, bool]) -> None:
    client = _client(any_cache)  # a standalone client connects here
    try:
        client.ping()
    finally:
        client.close()


def test_an_rbac_user_from_its_secret_is_who_the_client_is(
    any_cache: tuple[str, bool], acl_user: tuple[str, str], auth_secret: SecretsExtension
) -> None:
    # Given the secret the stack creates for the cache's user: {"username": ..., "password": ...}
    name, password = acl_user
    auth_secret.secrets[SECRET_ARN] = json.dumps({"username": name, "password": password})
    # When the container's client connects
    client = _client(any_cache)
    try:
        # Then it authenticated as that user (AUTH username password), not as the default user
        assert client.set("such-market:auth-check", b"1") is True
        assert client.execute_command("ACL", "WHOAMI") in (name, name.encode())
    finally:
        client.close()


def test_a_wrong_password_is_refused(
    any_cache: tuple[str, bool], acl_user: tuple[str, str], auth_secret: SecretsExtension
) -> None:
    name, _ = acl_user
    auth_secret.secrets[SECRET_ARN] = json.dumps({"username": name, "password": "not-" + secrets.token_hex(8)})
    with pytest.raises((redis.AuthenticationError, redis.exceptions.ResponseError, redis.RedisClusterException)):
        _ping(any_cache)


def test_a_plain_token_is_a_password_and_a_bad_secret_names_no_value(auth_secret: SecretsExtension) -> None:
    settings = CacheSettings(redis_url="redis://127.0.0.1:1", redis_auth_secret_arn=SECRET_ARN)
    auth_secret.secrets[SECRET_ARN] = "plain-auth-token-0123456789"
    assert credentials(settings) == (None, "plain-auth-token-0123456789")
    close_all()
    auth_secret.secrets[SECRET_ARN] = json.dumps({"username": "u", "secret": "hidden-value"})
    with pytest.raises(ConfigurationError) as error:
        credentials(settings)
    assert "hidden-value" not in str(error.value)
