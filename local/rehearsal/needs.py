"""What each function's code reads from AWS, derived from the code: the settings classes its handler uses.

A handler module (``functions/<name>/<name>.py``, found from the translated function's code location and
``Handler``) names the ``FunctionSettings`` classes it loads (``api_handler(app, X)``, ``runtime_for(X)``,
``EventConsumer(settings_model=X)``, ``load_settings(X)``); ruff refuses an unused import, so every such
class in the module's namespace is one it uses. Each class's parts declare their variables, and these
variables reference AWS resources by their names' endings:

- ``*_SECRET_ARN`` (``such_market.secrets.SECRET_REFERENCE_SUFFIX``): a secret the settings resolve, read
  with ``GetSecretValue`` (through the extension) or ``BatchGetSecretValue`` (without it);
- ``*_BUS_NAME``: the EventBridge bus the function publishes to (``events:PutEvents``);
- ``*_QUEUE_URL``/``*_DLQ_URL``: an SQS queue the function reads or sends to.

Nothing here is a list of functions or secrets: a new part with a ``..._SECRET_ARN`` field is a new need of
every function whose settings hold it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from such_market.config import FunctionSettings, SettingsPart
from such_market.secrets import SECRET_REFERENCE_SUFFIX

BUS_SUFFIX = "_BUS_NAME"
QUEUE_SUFFIXES = ("_QUEUE_URL", "_DLQ_URL")


@dataclass(frozen=True, slots=True)
class CodeNeeds:
    """The environment variables through which one function's code reaches AWS resources."""

    settings: tuple[type[FunctionSettings], ...]
    """The settings classes the handler uses."""
    parts: tuple[type[SettingsPart], ...]
    """Their parts, and the parts the handler loads alone."""
    secret_variables: frozenset[str]
    bus_variables: frozenset[str]
    queue_variables: frozenset[str]

    @property
    def variables(self) -> frozenset[str]:
        return self.secret_variables | self.bus_variables | self.queue_variables


def handler_module(code_dir: Path, handler: str) -> ModuleType:
    """The handler's module, imported once by its own name (handler modules have unique names)."""
    module_name = handler.rsplit(".", 1)[0]
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = code_dir / (module_name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler module at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def settings_classes(module: ModuleType) -> list[type[FunctionSettings]]:
    """The ``FunctionSettings`` classes in a handler module's namespace."""
    return _classes(module, FunctionSettings)


def _classes[T](module: ModuleType, base: type[T]) -> list[type[T]]:
    found: set[type[T]] = {
        value for value in vars(module).values() if isinstance(value, type) and issubclass(value, base)
    }
    return sorted(found - {base}, key=lambda kind: kind.__name__)


def _variables(parts: Iterable[type[SettingsPart]]) -> set[str]:
    return {field.name.upper() for part in parts for field in dataclasses.fields(part)}  # type: ignore[arg-type]


def code_needs(code_dir: Path, handler: str) -> CodeNeeds:
    """What the function whose code is in ``code_dir`` (with ``handler``) reads, from its settings classes
    and the settings parts it names (a part it loads alone, ``load_settings(CacheSettings)``, counts too)."""
    module = handler_module(code_dir, handler)
    classes = settings_classes(module)
    parts = {part for kind in classes for part in kind.parts().values()} | set(_classes(module, SettingsPart))
    variables = _variables(parts)
    return CodeNeeds(
        settings=tuple(classes),
        parts=tuple(sorted(parts, key=lambda part: part.__name__)),
        secret_variables=frozenset(name for name in variables if name.endswith(SECRET_REFERENCE_SUFFIX)),
        bus_variables=frozenset(name for name in variables if name.endswith(BUS_SUFFIX)),
        queue_variables=frozenset(name for name in variables if name.endswith(QUEUE_SUFFIXES)),
    )
