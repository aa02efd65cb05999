"""What happened to each sandbox, newest first: its runtime activity log.

Services record events as they happen (created, started, exited with a code,
terminal opened and closed, volume attached); `GET /api/sandboxes/{id}/activity`
pages through them. Entries are numbered in the order they were written, which is
the order they are listed in, newest first.
"""

from __future__ import annotations

import logging
from typing import Any

from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import InvalidRequest
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.activity")


def activity_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sandbox_id": row["sandbox_id"],
        "kind": row["kind"],
        "details": row["details"],
        "created_at": row["created_at"],
    }


class ActivityLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    def record(
        self, sandbox_id: str, kind: str, details: dict[str, Any] | None = None
    ) -> None:
        self._store.append_activity(sandbox_id, kind, details or {}, now_rfc3339())
        log.debug("sandbox %s: activity %s %s", sandbox_id, kind, details or "")

    def list(
        self, sandbox_id: str, limit: int, cursor: str | None
    ) -> list[dict[str, Any]]:
        """Entries of `sandbox_id`, newest first, after the entry named by `cursor`."""
        before = None
        if cursor is not None:
            if not cursor.startswith("act_") or not cursor[4:].isdigit():
                raise InvalidRequest(f"cursor {cursor!r} is not an activity id")
            before = int(cursor[4:])
        return self._store.activity_page(sandbox_id, limit, before)
