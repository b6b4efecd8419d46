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
from typing import Final

from such_market.observability import logger

SNAPSTART_INITIALIZATION: Final = "snap-start"


def after_restore() -> None:
    """Forget every per-container object: connections reopen and secrets are read again on next use."""
    from such_market.container import close_all

    close_all()
    logger.info("restored from a SnapStart snapshot: per-container connections and secrets dropped")


def register_hooks() -> bool:
    """Register ``after_restore`` with the runtime when this init is for a SnapStart snapshot (the
    container module does, once, at import); returns whether the hook is registered."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAPSTART_INITIALIZATION:
        return False
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:  # a runtime without SnapStart support: nothing will be restored
        return False
    register_after_restore(after_restore)
    return True
