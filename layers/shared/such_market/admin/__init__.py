"""Admin operations on the cache that are not a domain's own: clearing by scope (``cache_clear``)."""
