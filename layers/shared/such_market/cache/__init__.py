"""The Redis-protocol cache: client construction, and (later) keys, tiers, fills and invalidation."""
