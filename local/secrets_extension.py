"""A local stand-in for AWS's Parameters and Secrets Lambda Extension, for tests and the cold-start bench.

It answers as the extension does on ``localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT``:
``GET /secretsmanager/get?secretId=<id>`` with the GetSecretValue JSON and
``GET /systemsmanager/parameters/get?name=<name>&withDecryption=true`` with the GetParameter JSON; every
request must carry ``X-Aws-Parameters-Secrets-Token: <the function's AWS_SESSION_TOKEN>`` (none → 401, a
wrong one → 403, as the stand-in of a service that accepts only its own credential); an unknown secret is
a 400 carrying the AWS error, as the extension passes Secrets Manager's ``ResourceNotFoundException`` on.

Values come from ``secrets`` (reference → value), or, with ``from_aws=True``, from Secrets Manager / SSM
through boto3 (moto in tests). ``latency_ms`` (default ``DEFAULT_LATENCY_MS``) is added to every answer:
the real extension answers from its cache in a few milliseconds. ``requests`` counts what was served,
per reference, so tests can assert what our code asked for.

    python -m local.secrets_extension --port 2773 --token t --secret arn:…:secret:x=value
"""

from __future__ import annotations

import argparse
import base64
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import orjson

from local.stub_server import Answer, StubServer, run_in_foreground

DEFAULT_LATENCY_MS = 3.0
TOKEN_HEADER = "x-aws-parameters-secrets-token"
_JSON = {"Content-Type": "application/json"}


def _error(status: int, kind: str, message: str) -> Answer:
    return status, orjson.dumps({"__type": kind, "message": message}), _JSON


class SecretsExtension(StubServer):
    """The extension's HTTP interface on loopback (see the module doc)."""

    name = "secrets-extension"

    def __init__(
        self,
        *,
        token: str,
        secrets: Mapping[str, str] | None = None,
        from_aws: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = DEFAULT_LATENCY_MS,
    ) -> None:
        super().__init__(host=host, port=port, api_key=token, latency_ms=latency_ms)
        self.secrets = dict(secrets or {})
        self.from_aws = from_aws
        self.requests: Counter[str] = Counter()
        self.refused = 0
        self._lock = threading.Lock()

    def lambda_environment(self) -> dict[str, str]:
        """The variables under which a function (or the cold-start bench's child process) uses this
        stand-in as its extension: the port the template sets with the layer, and the session token."""
        if not self.running:
            raise RuntimeError("the secrets extension stand-in is not running")
        return {"PARAMETERS_SECRETS_EXTENSION_HTTP_PORT": str(self.port), "AWS_SESSION_TOKEN": self.api_key}

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.refused = 0

    def answer(self, path: str, headers: Mapping[str, str]) -> Answer:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        token = headers.get(TOKEN_HEADER)
        if not self.accepts(token):
            with self._lock:
                self.refused += 1
            if not token:
                return _error(401, "UnauthorizedException", "missing X-Aws-Parameters-Secrets-Token")
            return _error(403, "ForbiddenException", "X-Aws-Parameters-Secrets-Token is not valid")
        url = urlsplit(path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if url.path == "/secretsmanager/get" and query.get("secretId"):
            return self._secret(query["secretId"])
        if url.path == "/systemsmanager/parameters/get" and query.get("name"):
            return self._parameter(query["name"], decrypt=query.get("withDecryption") == "true")
        return _error(400, "ValidationException", "unknown path or missing query parameter")

    def _count(self, reference: str) -> None:
        with self._lock:
            self.requests[reference] += 1

    def _secret(self, reference: str) -> Answer:
        self._count(reference)
        if self.from_aws:
            import boto3
            from botocore.exceptions import ClientError

            try:
                answer: dict[str, object] = dict(boto3.client("secretsmanager").get_secret_value(SecretId=reference))
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", "ClientError"))
                return _error(400, code, "Secrets Manager refused the request")
            answer.pop("ResponseMetadata", None)
            if isinstance(binary := answer.get("SecretBinary"), bytes):
                answer["SecretBinary"] = base64.b64encode(binary).decode()  # JSON carries binary as base64
            return 200, orjson.dumps(answer, default=str), _JSON
        if reference not in self.secrets:
            return _error(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
        name = reference.rsplit(":", 1)[-1]
        body = {
            "ARN": reference,
            "Name": name,
            "SecretString": self.secrets[reference],
            "VersionId": str(uuid.uuid5(uuid.NAMESPACE_URL, reference)),
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": "2026-01-01T00:00:00.000Z",
        }
        return 200, orjson.dumps(body), _JSON

    def _parameter(self, name: str, *, decrypt: bool) -> Answer:
        self._count(name)
        if self.from_aws:
            import boto3
            from botocore.exceptions import ClientError

            try:
                parameter = dict(boto3.client("ssm").get_parameter(Name=name, WithDecryption=decrypt))
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", "ClientError"))
                return _error(400, code, "SSM refused the request")
            parameter.pop("ResponseMetadata", None)
            return 200, orjson.dumps(parameter, default=str), _JSON
        if name not in self.secrets:
            return _error(400, "ParameterNotFound", "the parameter does not exist")
        body = {"Parameter": {"Name": name, "Type": "SecureString", "Value": self.secrets[name], "Version": 1}}
        return 200, orjson.dumps(body), _JSON


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2773, help="the extension's default port")
    parser.add_argument("--token", required=True, help="the AWS_SESSION_TOKEN the function will send")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS)
    parser.add_argument("--secret", action="append", default=[], metavar="REFERENCE=VALUE")
    parser.add_argument("--from-aws", action="store_true", help="read values from Secrets Manager / SSM")
    arguments = parser.parse_args()
    secrets = dict(item.split("=", 1) for item in arguments.secret)
    extension = SecretsExtension(
        token=arguments.token,
        secrets=secrets,
        from_aws=arguments.from_aws,
        host=arguments.host,
        port=arguments.port,
        latency_ms=arguments.latency_ms,
    )
    run_in_foreground(
        extension, f"set PARAMETERS_SECRETS_EXTENSION_HTTP_PORT to that port and AWS_SESSION_TOKEN={arguments.token}"
    )


if __name__ == "__main__":
    main()
