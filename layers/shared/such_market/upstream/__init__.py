"""Clients of the upstream APIs (SPEC §7): Alchemy NFT API v3 and Neynar API v2, each with its settings.

Importing this package is free: it imports nothing. ``upstream.alchemy_settings`` and
``upstream.neynar_settings`` hold the settings parts (pydantic only, safe on the cold-start path of every
function); ``upstream.alchemy`` and ``upstream.neynar`` hold the httpx clients and their tolerant response
models, imported only by the code paths that really call an upstream (misses, ingestion, wallet scans);
``upstream.errors`` is the exception tree both share and ``upstream.retrying`` their bounded retries.
"""
