"""Clients of the upstream APIs (SPEC §7): the Alchemy NFT API v3 (``upstream.alchemy``) and its settings.

Importing this package is free: it imports nothing. ``upstream.settings`` holds the settings mixins
(pydantic only, safe on the cold-start path of every function); ``upstream.alchemy`` holds the httpx
client, the tolerant response models and the exception tree, and is imported only by the code paths
that really call Alchemy (misses, ingestion, wallet scans).
"""
