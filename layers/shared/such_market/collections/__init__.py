"""Data access for collections: the read path behind the collection endpoints and the ingestion writes.

``queries`` holds the read functions (run on cache misses; importing it stays cheap: psycopg is imported
only by callers that already hold a connection) and the frozen dataclasses they return, shaped as the API
answers so the use cases can serialize them with orjson directly. ``writes`` holds the set-based writers
used by ingestion, ownership syncs and refreshes.

Paging design: every token carries ``nfts.position``, its 0-based rank in numeric token order within its
collection (migration 0007). Page ``p`` of size ``s`` is the index range ``[p*s, p*s + s)``, so any depth
costs O(s). Cursors (``after_token_id``) are keyset scans over the primary key. Trait filters intersect
``nft_traits`` ranges, one per trait type. Rarity (``rarity``: OpenRarity scores and ranks, pure) is stored
by ``writes.rank_rarity`` with a dense place per token (``nfts.rarity_position``), so rarity-order pages
are place ranges the same way.
"""
