"""The settings and per-container runtime of the user endpoints: the collection read path plus Neynar.

``UsersSettings`` is ``ReadPathSettings`` (database, cache, bus, Alchemy) with ``NeynarSettings``;
``UsersRuntime`` is a ``Runtime`` that can also hand out the container's Neynar client, created on first
use like every other dependency, so a request answered from the cache never builds an httpx client.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from such_market.runtime import ReadPathSettings, Runtime
from such_market.upstream.neynar_settings import NeynarSettings

if TYPE_CHECKING:
    from such_market.upstream.neynar import NeynarClient


class UsersSettings(ReadPathSettings, NeynarSettings):
    """What the user endpoints need: database, cache, bus, Alchemy (wallet scans) and Neynar (profiles)."""


@dataclass
class UsersRuntime(Runtime):
    """A ``Runtime`` with the container's Neynar client."""

    settings: UsersSettings

    @property
    def neynar(self) -> NeynarClient:
        from such_market.upstream.neynar import get_neynar_client

        return get_neynar_client(self.settings)


@functools.cache
def users_runtime_for(settings: UsersSettings) -> UsersRuntime:
    """The container's runtime for ``settings``."""
    return UsersRuntime(settings)
