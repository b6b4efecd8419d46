"""SnapStart restore hooks: what a container must redo when Lambda resumes it from a snapshot.

With SnapStart (the template's ``SnapStart`` parameter), Lambda runs a function's init once, snapshots the
process and resumes copies of it for later cold starts, possibly much later. What the init left open is
then stale: sockets to the cache, the database and the upstreams were cut when the snapshot was taken, and
secrets may have been rotated since. The after-restore hook therefore closes every per-container object
(``container.close_all``: cache client, database connections, httpx and boto3 clients, and the secret
cache), so the first request reopens connections and reads secrets afresh.

The hooks are registered with ``snapshot_restore_py``, a module that exists only in Lambda's Python
runtime, and only when Lambda says this init is for a snapshot (``AWS_LAMBDA_INITIALIZATION_TYPE`` is
``snap-start``): elsewhere registering costs one environment lookup and imports nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

SNAPSTART_INITIALIZATION: Final = "snap-start"


def register_hooks(restore: Callable[[], object]) -> bool:
    """Have the runtime call ``restore`` after each restore when this init is for a SnapStart snapshot;
    returns whether it is registered. ``container`` registers its ``close_all`` once, at import (passed in,
    so that this module does not import the one that imports it)."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAPSTART_INITIALIZATION:
        return False
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:  # a runtime without SnapStart support: nothing will be restored
        return False

    def after_restore() -> None:
        from such_market.observability import logger  # logging stays off the authorizer's cold path

        restore()
        logger.info("restored from a SnapStart snapshot: per-container connections and secrets dropped")

    register_after_restore(after_restore)
    return True
