"""Secrets: read from the Parameters and Secrets extension (its local stand-in) over plain HTTP, else all of a
function's secrets in one ``BatchGetSecretValue`` (moto); cached per container, forgotten by ``close_all``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from local.secrets_extension import SecretsExtension
from such_market.container import close_all
from such_market.errors import ConfigurationError
from such_market.secrets import get_secret_json, get_secret_string, prefetch_secrets, query_value

REGION = "us-east-1"
TOKEN = "session-token-of-this-container"
ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A cold container with no secret variables, no extension, fake AWS credentials."""
    for name in list(os.environ):
        if name.endswith("_SECRET_ARN") or name == "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    close_all()
    yield monkeypatch
    close_all()


@pytest.fixture
def extension(secret_env: pytest.MonkeyPatch) -> Iterator[SecretsExtension]:
    """The extension's stand-in, attached as the template attaches the layer (the port variable set)."""
    with SecretsExtension(token=TOKEN, secrets={f"{ARN}db": '{"password": "p"}', "/app/key": "ssm-value"}) as stub:
        for name, value in stub.lambda_environment().items():
            secret_env.setenv(name, value)
        yield stub


class AwsCalls:
    """Every AWS operation our code sent, with its parameters (botocore's before-parameter-build event)."""

    def __init__(self) -> None:
        self.operations: Counter[str] = Counter()
        self.parameters: list[dict[str, Any]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: object) -> None:
        self.operations[model.name] += 1
        self.parameters.append(params)


@pytest.fixture
def aws(secret_env: pytest.MonkeyPatch) -> Iterator[AwsCalls]:
    with mock_aws():
        boto3.setup_default_session()
        calls = AwsCalls()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", calls)
        yield calls
    boto3.DEFAULT_SESSION = None


def _create_secrets(count: int) -> list[str]:
    client = boto3.client("secretsmanager", region_name=REGION)
    return [client.create_secret(Name=f"secret-{i}", SecretString=f"value-{i}")["ARN"] for i in range(count)]


def test_with_the_extension_secrets_come_over_http_with_the_session_token(extension: SecretsExtension) -> None:
    assert get_secret_json(f"{ARN}db") == {"password": "p"}
    assert get_secret_string("/app/key") == "ssm-value"
    assert get_secret_string(f"{ARN}db") == '{"password": "p"}'  # cached: no second request
    assert extension.requests == Counter({f"{ARN}db": 1, "/app/key": 1})
    assert extension.refused == 0


def test_the_extension_refuses_a_wrong_token_and_we_say_which_secret(
    extension: SecretsExtension, secret_env: pytest.MonkeyPatch
) -> None:
    secret_env.setenv("AWS_SESSION_TOKEN", "another-token")
    with pytest.raises(ConfigurationError, match=r"secret db could not be read \(extension HTTP 403\)"):
        get_secret_string(f"{ARN}db")
    assert extension.refused == 1


def test_an_unknown_secret_fails_naming_it(extension: SecretsExtension) -> None:
    with pytest.raises(ConfigurationError, match=r"secret missing could not be read \(extension HTTP 400\)"):
        get_secret_string(f"{ARN}missing")


def test_the_extension_path_imports_no_aws_sdk(extension: SecretsExtension) -> None:
    # A fresh process, as a cold Lambda container (the stand-in serves from this one): reading a secret
    # through the extension imports neither the AWS SDK nor http.client.
    code = (
        "import sys\n"
        "from such_market.secrets import get_secret_string\n"
        f"assert get_secret_string('{ARN}db') == '{{\"password\": \"p\"}}'\n"
        "print(sorted(name for name in ('boto3', 'http.client') if name in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "shared")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)  # noqa: S603 (our code)
    assert result.stdout.strip() == "[]"
    assert extension.requests[f"{ARN}db"] == 1


def test_without_the_extension_one_batch_call_reads_every_secret_of_the_environment(
    aws: AwsCalls, secret_env: pytest.MonkeyPatch
) -> None:
    arns = _create_secrets(4)
    boto3.client("ssm", region_name=REGION).put_parameter(Name="/app/key", Value="ssm-value", Type="SecureString")
    for i, arn in enumerate(arns):
        secret_env.setenv(f"PART{i}_SECRET_ARN", arn)
    secret_env.setenv("SSM_KEY_SECRET_ARN", "/app/key")
    secret_env.setenv("UNSET_SECRET_ARN", "")
    aws.operations.clear()

    assert [get_secret_string(arn) for arn in arns] == ["value-0", "value-1", "value-2", "value-3"]
    assert get_secret_string("/app/key") == "ssm-value"

    assert aws.operations == Counter({"BatchGetSecretValue": 1, "GetParameters": 1})
    batch = next(params for params in aws.parameters if "SecretIdList" in params)
    assert sorted(batch["SecretIdList"]) == sorted(arns)


def test_concurrent_first_lookups_make_one_batch_call(aws: AwsCalls, secret_env: pytest.MonkeyPatch) -> None:
    arns = _create_secrets(6)
    for i, arn in enumerate(arns):
        secret_env.setenv(f"PART{i}_SECRET_ARN", arn)
    aws.operations.clear()
    with ThreadPoolExecutor(max_workers=len(arns)) as pool:
        values = list(pool.map(get_secret_string, arns))
    assert values == [f"value-{i}" for i in range(len(arns))]
    assert aws.operations == Counter({"BatchGetSecretValue": 1})


def test_a_partial_arn_reads_its_own_secret_not_one_whose_name_extends_it(aws: AwsCalls) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    admin = client.create_secret(Name="db-admin", SecretString="admin")["ARN"]
    database = client.create_secret(Name="db", SecretString="db")["ARN"]
    partial = database[: -len("-AbCdEf")]  # the ARN without Secrets Manager's random suffix
    assert prefetch_secrets([admin, partial]) == {admin: "admin", partial: "db"}


def test_an_absent_extension_falls_back_to_the_batch_call(aws: AwsCalls, secret_env: pytest.MonkeyPatch) -> None:
    (arn,) = _create_secrets(1)
    with SecretsExtension(token=TOKEN) as stub:
        port = stub.port  # a port nothing listens on once the stand-in stopped
    secret_env.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(port))
    secret_env.setenv("PART_SECRET_ARN", arn)
    aws.operations.clear()
    assert get_secret_string(arn) == "value-0"
    assert aws.operations == Counter({"BatchGetSecretValue": 1})


def test_a_secret_the_batch_cannot_read_fails_naming_it_and_the_others_are_kept(
    aws: AwsCalls, secret_env: pytest.MonkeyPatch
) -> None:
    (arn,) = _create_secrets(1)
    missing = f"{ARN}not-there-AbCdEf"
    assert prefetch_secrets([arn, missing]) == {arn: "value-0"}
    with pytest.raises(ConfigurationError, match="secret not-there-AbCdEf could not be read"):
        get_secret_string(missing)
    aws.operations.clear()
    assert get_secret_string(arn) == "value-0"
    assert aws.operations["BatchGetSecretValue"] == 0


def test_a_cold_container_reads_secrets_again(extension: SecretsExtension) -> None:
    get_secret_string(f"{ARN}db")
    close_all()
    get_secret_string(f"{ARN}db")
    assert extension.requests[f"{ARN}db"] == 2


@given(st.text())
def test_a_secret_id_is_percent_encoded_as_urllib_would(text: str) -> None:
    assert query_value(text) == quote(text, safe="")


def test_an_arn_is_percent_encoded_for_the_extensions_query() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:such-market/admin token+x-AbCdEf"
    expected = "arn%3Aaws%3Asecretsmanager%3Aus-east-1%3A123456789012%3Asecret%3Asuch-market%2Fadmin%20token%2Bx-AbCdEf"
    assert query_value(arn) == expected
