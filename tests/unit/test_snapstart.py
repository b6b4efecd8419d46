"""SnapStart: the after-restore hook is registered at init (only for a snapshot init) and, when the runtime
calls it, closes the container's connections and forgets its secrets, so both are made afresh on next use."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from local.secrets_extension import SecretsExtension
from such_market import snapstart
from such_market.cache.client import get_client
from such_market.config import CacheSettings, DatabaseSettings, load_settings
from such_market.container import close_all
from such_market.db.connection import get_connection
from such_market.secrets import get_secret_string
from such_market.upstream.alchemy import get_alchemy_client
from such_market.upstream.alchemy_settings import AlchemySettings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "session-token"
ALCHEMY_KEY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:alchemy-key-AbCdEf"


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Lambda's ``snapshot_restore_py`` as the runtime provides it: it keeps the registered callbacks."""
    callbacks: list[Callable[[], None]] = []
    module = types.ModuleType("snapshot_restore_py")
    module.register_after_restore = callbacks.append  # type: ignore[attr-defined]
    module.register_before_snapshot = lambda _: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    return callbacks


def test_the_hook_is_registered_only_for_a_snapshot_init(
    runtime: list[Callable[[], None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    restores: list[str] = []
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    assert snapstart.register_hooks(lambda: restores.append("restored")) is False
    assert runtime == []
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    assert snapstart.register_hooks(lambda: restores.append("restored")) is True
    (callback,) = runtime
    callback()
    assert restores == ["restored"]


def test_a_function_init_registers_the_hook(tmp_path: Path) -> None:
    # A fresh process, as Lambda's init: importing the layer (any function does) registers the hook.
    (tmp_path / "snapshot_restore_py.py").write_text(
        "callbacks = []\nregister_after_restore = callbacks.append\nregister_before_snapshot = callbacks.append\n"
    )
    code = "import snapshot_restore_py\nimport such_market.config\nprint(len(snapshot_restore_py.callbacks))\n"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "layers" / "shared")]),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)  # noqa: S603 (our code)
    assert result.stdout.strip() == "1"


@pytest.fixture
def extension(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsExtension]:
    """The Alchemy key comes from the extension's stand-in (as in AWS), the rest as in ``lambda_env``."""
    with SecretsExtension(token=TOKEN, secrets={ALCHEMY_KEY_ARN: lambda_env["ALCHEMY_API_KEY"]}) as stub:
        monkeypatch.delenv("ALCHEMY_API_KEY")
        monkeypatch.setenv("ALCHEMY_API_KEY_SECRET_ARN", ALCHEMY_KEY_ARN)
        monkeypatch.setenv("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", str(stub.port))
        monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
        yield stub


def test_after_restore_connections_are_reopened_and_secrets_read_again(
    runtime: list[Callable[[], None]], extension: SecretsExtension, cache: redis.Redis
) -> None:
    assert snapstart.register_hooks(close_all)
    # Given a container initialised before the snapshot: database, cache and Alchemy clients open, key read
    conn = get_connection(load_settings(DatabaseSettings))
    conn.execute("SELECT 1")
    cache_client = get_client(load_settings(CacheSettings))
    cache_client.ping()
    clients_before = len(cache.client_list())
    alchemy = get_alchemy_client(load_settings(AlchemySettings))
    assert extension.requests[ALCHEMY_KEY_ARN] == 1
    extension.secrets[ALCHEMY_KEY_ARN] = "rotated-while-the-snapshot-slept"

    # When Lambda restores the snapshot
    for callback in runtime:
        callback()

    # Then every connection was closed, and the next use opens new ones and reads the secret again
    assert conn.closed
    assert len(cache.client_list()) == clients_before - 1
    assert get_connection(load_settings(DatabaseSettings)) is not conn
    assert get_client(load_settings(CacheSettings)) is not cache_client
    assert get_alchemy_client(load_settings(AlchemySettings)) is not alchemy
    assert extension.requests[ALCHEMY_KEY_ARN] == 2
    assert get_secret_string(ALCHEMY_KEY_ARN) == "rotated-while-the-snapshot-slept"
