"""The registry storage's background duty while the control plane serves.

Upload sessions a client abandoned (it crashed, or gave up between chunks) hold
bytes that no request will ever finish. Every PURGE_INTERVAL_S the stale ones,
started more than UPLOAD_MAX_AGE_S ago, are deleted; a session being written at
that moment is skipped by the driver. When the control plane stops, the storage's
connections are closed.
"""

from __future__ import annotations

import logging

import trio

from .errors import RegistryError
from .storage import BlobStorage

log = logging.getLogger("gstacks.cp.registry")

MINUTES = 60
HOURS = 60 * MINUTES
PURGE_INTERVAL_S = 15 * MINUTES
UPLOAD_MAX_AGE_S = 24 * HOURS


async def serve_registry_storage(
    storage: BlobStorage,
    *,
    interval_s: float = PURGE_INTERVAL_S,
    max_age_s: float = UPLOAD_MAX_AGE_S,
) -> None:
    """Purge stale uploads every `interval_s` until cancelled, then close storage."""
    try:
        while True:
            await trio.sleep(interval_s)
            try:
                await storage.purge_uploads(max_age_s)
            except RegistryError as exc:
                # The storage is unreachable for now; the next round tries again.
                log.warning("purging stale uploads failed: %s", exc.message)
    finally:
        with trio.CancelScope(shield=True):
            await storage.aclose()
