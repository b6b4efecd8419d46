"""Secret values by reference (Secrets Manager ARNs, SSM parameters), cached per container.

Only this module talks to Secrets Manager and SSM, and it keeps boto3 off a function's cold path:

- Where AWS's Parameters and Secrets Lambda Extension runs beside the function, each secret is one plain HTTP
  request to it on localhost (no SDK; the extension keeps its own cache and calls Secrets Manager itself).
  The template attaches the extension's layer and, with it, sets ``PARAMETERS_SECRETS_EXTENSION_HTTP_PORT``:
  that variable (with ``AWS_SESSION_TOKEN``, which the extension demands in a header) is how this module knows
  the extension is there, with no probe. An extension that does not answer (refused, reset, timed out) is
  treated as absent.
- Elsewhere (no extension layer, or it is down), the first lookup reads every secret the function's
  environment names (each ``*_SECRET_ARN`` variable) in one ``BatchGetSecretValue`` call, plus one
  ``GetParameters`` call when some are SSM parameters; boto3 is imported only then. Never one call per secret.

Values are cached for ``SECRET_MAX_AGE_SECONDS`` so a rotated secret is picked up without a redeploy. The
cache is a per-container object: ``container.close_all()`` (a cold container in tests, the SnapStart
after-restore hook) forgets it, so secrets are read again. Values are never logged, nor put in error texts.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from such_market import deadline
from such_market.container import per_container
from such_market.errors import ConfigurationError

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

    from such_market.config import SecretStr

SECRET_MAX_AGE_SECONDS: Final = 300
SECRET_REFERENCE_PATTERN: Final = r"^(arn:aws[\w-]*:(secretsmanager|ssm):\S+|/\S+)$"
"""A Secrets Manager ARN, an SSM parameter ARN, or an SSM parameter name (``/…``)."""
SECRET_REFERENCE_SUFFIX: Final = "_SECRET_ARN"
"""Environment variables whose value references a secret: prefetched together on the first lookup."""

EXTENSION_PORT_VARIABLE: Final = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
EXTENSION_HOST: Final = "localhost"
EXTENSION_TOKEN_HEADER: Final = "X-Aws-Parameters-Secrets-Token"
EXTENSION_TIMEOUT_SECONDS: Final = 2.0
"""The extension answers from its cache in about a millisecond; a miss is one Secrets Manager call."""
BATCH_SECRETS_LIMIT: Final = 20  # BatchGetSecretValue's SecretIdList maximum
BATCH_PARAMETERS_LIMIT: Final = 10  # GetParameters' Names maximum
MINIMUM_TIMEOUT_SECONDS: Final = 0.1
"""Never less, even past the deadline: a zero timeout would make a socket non-blocking, not fail fast."""
AWS_CONNECT_TIMEOUT_SECONDS: Final = 2.0
AWS_READ_TIMEOUT_SECONDS: Final = 5.0


class ExtensionUnavailableError(Exception):
    """The Parameters and Secrets extension did not answer (absent, not yet listening, or stuck)."""


_UNRESERVED: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def query_value(text: str) -> str:
    """``text`` percent-encoded as a query-string value (every byte but RFC 3986's unreserved ones), as
    ``urllib.parse.quote(text, safe="")`` does: importing urllib.parse (and ipaddress with it) cost the
    authorizer's cold start about 5 ms of its ~40 ms over the interpreter."""
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in text.encode())


def _plain(value: SecretStr | None) -> str:
    return value.get_secret_value().strip() if value is not None else ""


def has_secret_source(plain: SecretStr | None, reference: str | None) -> bool:
    """Whether a secret is given, as a plain (non-blank) value or by reference."""
    return bool(_plain(plain)) or bool(reference)


def resolve_secret(plain: SecretStr | None, reference: str | None, *, variable: str) -> str:
    """The secret itself: the plain variable ``variable``, else the secret ``<variable>_SECRET_ARN``
    references (cached per container); a ``ConfigurationError`` naming both when neither is set."""
    if value := _plain(plain):
        return value
    if reference is None:
        raise ConfigurationError(f"set {variable} or {variable}_SECRET_ARN")
    return get_secret_string(reference).strip()


def get_secret_string(reference: str) -> str:
    """Return the secret named by ``reference`` (a Secrets Manager ARN or an SSM parameter name)."""
    return _cache(None).get(reference)


def get_secret_json(reference: str) -> dict[str, Any]:
    """Return a JSON-object secret (such as the RDS credentials secret) as a dict."""
    raw = get_secret_string(reference)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ConfigurationError("the secret is not a JSON object") from error
    if not isinstance(parsed, dict):
        raise ConfigurationError("the secret is not a JSON object")
    return parsed


def environment_secret_references(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret reference the environment names (the values of ``*_SECRET_ARN`` variables), sorted."""
    environ = os.environ if environ is None else environ
    return sorted(
        {
            value.strip()
            for name, value in environ.items()
            if name.endswith(SECRET_REFERENCE_SUFFIX) and re.match(SECRET_REFERENCE_PATTERN, value.strip())
        }
    )


def prefetch_secrets(references: Iterable[str]) -> dict[str, str]:
    """Read every secret of ``references`` from AWS in one call per service (``BatchGetSecretValue``, and
    ``GetParameters`` for SSM parameters), cache them, and return those that could be read. A secret that
    could not be read (missing, no permission) is left out: it fails when it is asked for."""
    return _cache(None).prefetch(references)


def extension_port(environ: Mapping[str, str] | None = None) -> int | None:
    """The port of the Parameters and Secrets extension when the template attached it (see the module doc)."""
    environ = os.environ if environ is None else environ
    port = environ.get(EXTENSION_PORT_VARIABLE, "").strip()
    if not port or not environ.get("AWS_SESSION_TOKEN"):
        return None
    try:
        return int(port)
    except ValueError:
        raise ConfigurationError(f"{EXTENSION_PORT_VARIABLE} is not a port number") from None


def _short_name(reference: str) -> str:
    """What an error may say about a secret: its name, not its account or region."""
    return reference.rsplit(":", 1)[-1]


def _text(value: object, reference: str) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"secret {_short_name(reference)} is empty or not a string")
    return value


def _is_secrets_manager(reference: str) -> bool:
    return reference.startswith("arn:") and ":secretsmanager:" in reference


def _timeout(seconds: float) -> float:
    """``seconds``, cut to the invocation's deadline."""
    return max(MINIMUM_TIMEOUT_SECONDS, deadline.bounded(seconds))


def _http_get(port: int, path: str, token: str) -> tuple[int, bytes]:
    """``GET path`` from the extension: an HTTP/1.0 request on a plain socket (``http.client`` and the
    ``email`` package it pulls in cost ~25 ms of import), so the answer is never chunked and ends at EOF."""
    request = (
        f"GET {path} HTTP/1.0\r\nHost: {EXTENSION_HOST}:{port}\r\n{EXTENSION_TOKEN_HEADER}: {token}\r\n\r\n"
    ).encode()
    with socket.create_connection((EXTENSION_HOST, port), timeout=_timeout(EXTENSION_TIMEOUT_SECONDS)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, separator, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not separator or len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionResetError("not an HTTP answer")
    return int(status_line[1]), body


def read_from_extension(reference: str, *, port: int, token: str) -> str:
    """One secret from the Parameters and Secrets extension (``ExtensionUnavailableError`` when it does not
    answer; ``ConfigurationError`` when it answers that the secret cannot be read)."""
    if _is_secrets_manager(reference):
        path = f"/secretsmanager/get?secretId={query_value(reference)}"
    else:
        path = f"/systemsmanager/parameters/get?name={query_value(reference)}&withDecryption=true"
    try:
        status, body = _http_get(port, path, token)
    except OSError as error:  # refused, reset, timed out: the extension is not serving
        raise ExtensionUnavailableError(type(error).__name__) from error
    if status != 200:
        # The body is the AWS error (no secret in it), but a status is all the caller needs.
        raise ConfigurationError(f"secret {_short_name(reference)} could not be read (extension HTTP {status})")
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ConfigurationError(f"secret {_short_name(reference)}: the extension's answer is not JSON") from error
    if _is_secrets_manager(reference):
        if answer.get("SecretString") is not None:
            return _text(answer["SecretString"], reference)
        import base64  # only binary secrets need it

        binary = answer.get("SecretBinary")
        return _text(base64.b64decode(binary) if isinstance(binary, str) else None, reference)
    return _text((answer.get("Parameter") or {}).get("Value"), reference)


def _aws_config() -> Config:
    """Bounded timeouts and retries for the AWS clients, made only where the extension is absent."""
    from botocore.config import Config

    return Config(
        connect_timeout=_timeout(AWS_CONNECT_TIMEOUT_SECONDS),
        read_timeout=_timeout(AWS_READ_TIMEOUT_SECONDS),
        retries={"max_attempts": 2, "mode": "standard"},
    )


def _secrets_manager() -> SecretsManagerClient:
    import boto3

    return boto3.client("secretsmanager", config=_aws_config())


def _ssm() -> SSMClient:
    import boto3

    return boto3.client("ssm", config=_aws_config())


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


SECRET_ARN_SUFFIX_LENGTH: Final = 7  # "-" and the 6 random characters Secrets Manager appends to a name


def _matching(reference: str, *names: object) -> bool:
    # A reference may be a full ARN, a partial one (without the random suffix) or a name; a partial "db"
    # must not match the ARN of "db-admin" (its suffix would not be 6 characters).
    return any(
        isinstance(name, str)
        and (
            name == reference
            or (name.startswith(reference + "-") and len(name) == len(reference) + SECRET_ARN_SUFFIX_LENGTH)
        )
        for name in names
    )


def batch_read(references: Iterable[str]) -> dict[str, str]:
    """Read ``references`` from AWS: one ``BatchGetSecretValue`` for the Secrets Manager ARNs (per 20) and
    one ``GetParameters`` for the SSM parameters (per 10). Unreadable ones are left out."""
    wanted = sorted(set(references))
    secrets = [reference for reference in wanted if _is_secrets_manager(reference)]
    parameters = [reference for reference in wanted if not _is_secrets_manager(reference)]
    found: dict[str, str] = {}
    if secrets:
        client = _secrets_manager()
        for chunk in _chunks(secrets, BATCH_SECRETS_LIMIT):
            answer = client.batch_get_secret_value(SecretIdList=chunk)
            for value in answer.get("SecretValues", []):
                for reference in chunk:
                    if _matching(reference, value.get("ARN"), value.get("Name")):
                        raw = value.get("SecretString", value.get("SecretBinary"))
                        if raw:
                            found[reference] = raw.decode() if isinstance(raw, bytes) else str(raw)
    if parameters:
        ssm = _ssm()
        for chunk in _chunks(parameters, BATCH_PARAMETERS_LIMIT):
            read = ssm.get_parameters(Names=chunk, WithDecryption=True)
            for parameter in read.get("Parameters", []):
                for reference in chunk:
                    if reference in (parameter.get("Name"), parameter.get("ARN")) and parameter.get("Value"):
                        found[reference] = str(parameter["Value"])
    return found


class SecretCache:
    """The container's secrets, each kept ``SECRET_MAX_AGE_SECONDS`` (a ``time.monotonic()`` expiry)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self._values: dict[str, tuple[float, str]] = {}
        # One reader at a time: concurrent first lookups make one batch call, not one each.
        self._lock = threading.Lock()

    def _kept(self, reference: str) -> str | None:
        kept = self._values.get(reference)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    def _keep(self, values: Mapping[str, str]) -> None:
        expires = time.monotonic() + SECRET_MAX_AGE_SECONDS
        for reference, value in values.items():
            self._values[reference] = (expires, value)

    def get(self, reference: str) -> str:
        if (value := self._kept(reference)) is not None:
            return value
        with self._lock:
            if (value := self._kept(reference)) is not None:
                return value
            environ = os.environ if self._environ is None else self._environ
            port = extension_port(environ)
            if port is not None:
                try:
                    value = read_from_extension(reference, port=port, token=environ["AWS_SESSION_TOKEN"])
                except ExtensionUnavailableError:
                    value = None  # read from AWS below, as without the extension
                if value is not None:
                    self._keep({reference: value})
                    return value
            self._prefetch_locked([reference, *environment_secret_references(environ)])
            if (value := self._kept(reference)) is None:
                raise ConfigurationError(f"secret {_short_name(reference)} could not be read (missing or not allowed)")
            return value

    def prefetch(self, references: Iterable[str]) -> dict[str, str]:
        with self._lock:
            return self._prefetch_locked(references)

    def _prefetch_locked(self, references: Iterable[str]) -> dict[str, str]:
        references = list(references)
        missing = sorted({reference for reference in references if self._kept(reference) is None})
        found = {reference: _text(value, reference) for reference, value in batch_read(missing).items()}
        self._keep(found)
        return {reference: value for reference in references if (value := self._kept(reference)) is not None}


@per_container()
def _cache(_: None) -> SecretCache:
    """The container's secret cache (forgotten by ``close_all``: a restored snapshot reads secrets again)."""
    return SecretCache()
