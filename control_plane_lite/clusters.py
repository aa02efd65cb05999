"""Infrastructure clusters: the groups hosts belong to.

A cluster is either `byo` (bring your own: the tenant's own machines, which join it
by enrolling with a provisioning token) or `managed` (sandbox capacity GlobalStacks
runs for the tenant; its hosts are provisioned by the operator, never with a token).
Every host belongs to exactly one cluster. A cluster can only be deleted once no host
is enrolled in it; deleting it also deletes its provisioning tokens, so none of them
can enrol a host into a cluster that no longer exists.

The standalone lab puts its own host into a BYO cluster named `default`, created on
first start (`ensure_default`).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from control_plane_lite import ids
from control_plane_lite.auth import Principal
from control_plane_lite.clock import now_rfc3339
from control_plane_lite.errors import Conflict, InvalidRequest, NotFound
from control_plane_lite.store import Store

log = logging.getLogger("gstacks.cp.clusters")

KINDS = ("byo", "managed")
DEFAULT_CLUSTER_NAME = "default"
MAX_DESCRIPTION_CHARS = 500
CREATE_FIELDS = frozenset({"name", "kind", "description"})

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def cluster_record(row: dict[str, Any], host_count: int) -> dict[str, Any]:
    """The API's shape of a cluster row."""
    return {
        "id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "description": row["description"],
        "host_count": host_count,
        "created_at": row["created_at"],
    }


class ClusterService:
    """Creates, finds and deletes clusters, one tenant at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def ensure_default(self, tenant_id: str) -> str:
        """The id of the tenant's `default` BYO cluster, made on first call.

        Hosts recorded before clusters existed have no cluster; they join this one.
        """
        row = self._store.find_one(
            "clusters", tenant_id=tenant_id, name=DEFAULT_CLUSTER_NAME
        )
        if row is None:
            row = self._insert(
                tenant_id,
                DEFAULT_CLUSTER_NAME,
                "byo",
                "The standalone lab's own host.",
            )
            log.info("cluster %s: created the default BYO cluster", row["id"])
        for host in self._store.select("hosts", tenant_id=tenant_id, cluster_id=None):
            self._store.update("hosts", host["id"], cluster_id=row["id"])
            log.info("host %s: joined cluster %s", host["id"], row["id"])
        return row["id"]

    def create(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Validate and record a cluster; Conflict if the name is taken."""
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        name = body.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidRequest(
                "name is required and must be a DNS label "
                f"(lowercase letters, digits, '-'), not {name!r}"
            )
        kind = body.get("kind", "byo")
        if kind not in KINDS:
            raise InvalidRequest(
                f"kind must be one of {', '.join(KINDS)}, not {kind!r}"
            )
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidRequest(
                f"description must be a string of at most {MAX_DESCRIPTION_CHARS} "
                "characters"
            )
        try:
            row = self._insert(principal.tenant_id, name, kind, description)
        except sqlite3.IntegrityError as exc:
            raise Conflict(
                f"a cluster named {name!r} already exists", name=name
            ) from exc
        log.info("cluster %s: created %s cluster %r", row["id"], kind, name)
        return row

    def get(self, principal: Principal, cluster_id: str) -> dict[str, Any]:
        """The tenant's cluster; NotFound for an unknown or another tenant's id."""
        row = self._store.get("clusters", cluster_id)
        if row is None or row["tenant_id"] != principal.tenant_id:
            raise NotFound(
                f"cluster {cluster_id} does not exist", cluster_id=cluster_id
            )
        return row

    def list(
        self, principal: Principal, limit: int, after_id: str | None
    ) -> list[dict[str, Any]]:
        return self._store.select(
            "clusters", tenant_id=principal.tenant_id, limit=limit, after_id=after_id
        )

    def host_count(self, cluster_id: str) -> int:
        return self._store.count("hosts", cluster_id=cluster_id)

    def delete(self, principal: Principal, cluster_id: str) -> None:
        """Delete an empty cluster and its provisioning tokens."""
        row = self.get(principal, cluster_id)
        hosts = self.host_count(cluster_id)
        if hosts:
            raise Conflict(
                f"cluster {cluster_id} still has {hosts} enrolled host(s); "
                "delete them first",
                cluster_id=cluster_id,
                host_count=hosts,
            )
        tokens = self._store.delete_where(
            "provisioning_tokens", "cluster_id = ?", (cluster_id,)
        )
        self._store.delete("clusters", cluster_id)
        log.info(
            "cluster %s: deleted %r with %d provisioning token(s)",
            cluster_id,
            row["name"],
            tokens,
        )

    def _insert(
        self, tenant_id: str, name: str, kind: str, description: str
    ) -> dict[str, Any]:
        return self._store.insert(
            "clusters",
            {
                "id": ids.new_id("cluster"),
                "tenant_id": tenant_id,
                "name": name,
                "kind": kind,
                "description": description,
                "created_at": now_rfc3339(),
            },
        )
