"""The Redis-protocol cache: the client (``client``), key names (``keys``), TTL tiers (``tiers``), the
stored value layout (``entries``), the leased read-through front (``store``) with its Lua scripts
(``scripts``) and circuit breaker (``breaker``). What each event invalidates is in
``such_market.events.invalidation``; locks in ``such_market.locks``."""
