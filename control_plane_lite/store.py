"""SQLite state of the lite control plane.

One database file under the state dir, opened in WAL mode so readers never wait for
the writer and a crash loses at most the transaction in flight. Every table holds
one resource kind, keyed by its prefixed id; columns that hold structured values are
declared in `JSON_COLUMNS` and stored as JSON text. Services speak to the store in
plain dicts, so the store knows nothing of HTTP or of the agent channel.

Schema changes are named migrations, applied once each, in the order listed, when the
store opens; the `schema_migrations` table records which ones a database has had.
Names rather than numbers let each capability add its own tables without two changes
racing for the same number. A migration is never edited once it has landed: change
the schema with a new one.

The control plane runs on one trio thread and every statement here is short, so the
store is used synchronously from the event loop: a sub-millisecond local write does
not earn a thread hop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001-core",
        """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE hosts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        hostname TEXT NOT NULL DEFAULT '',
        credential_hash TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        agent_version TEXT NOT NULL DEFAULT '',
        last_seen_at TEXT,
        created_at TEXT NOT NULL,
        overview TEXT,
        capabilities TEXT NOT NULL DEFAULT '[]',
        cached_images TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE blueprints (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        image TEXT NOT NULL,
        status TEXT NOT NULL,
        artifact_ref TEXT NOT NULL,
        artifact_digest TEXT NOT NULL,
        registry_connection_id TEXT,
        source_sandbox_id TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        image TEXT NOT NULL,
        image_digest TEXT NOT NULL,
        artifact_ref TEXT NOT NULL,
        source_blueprint_id TEXT,
        host_id TEXT,
        command TEXT NOT NULL DEFAULT '[]',
        env TEXT NOT NULL DEFAULT '{}',
        exit_code INTEGER,
        message TEXT NOT NULL DEFAULT '',
        repository_id TEXT,
        repository_url TEXT,
        repository_branch TEXT,
        repository_commit TEXT,
        repository_path TEXT,
        repository_credential_secret_ref TEXT,
        repository_bootstrap_status TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX sandboxes_blueprint ON sandboxes (source_blueprint_id);
    CREATE TABLE registry_credentials (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        tenant_id TEXT NOT NULL,
        repository TEXT NOT NULL,
        actions TEXT NOT NULL,
        artifact TEXT,
        expires_at REAL NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE terminal_sessions (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        sandbox_id TEXT,
        host_id TEXT NOT NULL,
        command TEXT NOT NULL,
        cols INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        closed_at TEXT
    );
    """,
    ),
    (
        "0002-terminal-reattach-and-activity",
        """
    ALTER TABLE terminal_sessions ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE terminal_sessions ADD COLUMN started_at TEXT;
    ALTER TABLE terminal_sessions ADD COLUMN attached INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE terminal_sessions ADD COLUMN tty INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE sandbox_activity (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    );
    CREATE INDEX sandbox_activity_by_sandbox ON sandbox_activity (sandbox_id, seq);
    """,
    ),
    (
        "0003-clusters-and-enrollment",
        """
    CREATE TABLE clusters (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE provisioning_tokens (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        cluster_id TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        max_uses INTEGER NOT NULL,
        uses INTEGER NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE INDEX provisioning_tokens_cluster ON provisioning_tokens (cluster_id);
    ALTER TABLE hosts ADD COLUMN cluster_id TEXT;
    ALTER TABLE hosts ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE hosts ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
    ALTER TABLE hosts ADD COLUMN provisioning_token_id TEXT;
    """,
    ),
    (
        "volumes-0001",
        """
    CREATE TABLE volumes (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        filesystem_id TEXT,
        realized_host_ids TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE volume_attachments (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        volume_id TEXT NOT NULL REFERENCES volumes (id),
        target TEXT NOT NULL,
        host_id TEXT NOT NULL,
        sandbox_id TEXT,
        mount_path TEXT,
        host_path TEXT,
        read_only INTEGER NOT NULL,
        implicit INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX volume_attachments_volume ON volume_attachments (volume_id);
    CREATE INDEX volume_attachments_sandbox ON volume_attachments (sandbox_id);
    CREATE TABLE volume_filesystems (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        filesystem_id TEXT NOT NULL DEFAULT '',
        remounts INTEGER NOT NULL DEFAULT 0,
        last_failure TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    """,
    ),
    (
        "networks-and-mesh",
        """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        name TEXT NOT NULL,
        cidr TEXT NOT NULL,
        gateway TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        UNIQUE (tenant_id, name)
    );
    CREATE TABLE network_members (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL,
        sandbox_id TEXT NOT NULL,
        host_id TEXT NOT NULL,
        address TEXT NOT NULL,
        aliases TEXT NOT NULL DEFAULT '[]',
        ports TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        UNIQUE (network_id, sandbox_id),
        UNIQUE (network_id, address)
    );
    CREATE INDEX network_members_sandbox ON network_members (sandbox_id);
    CREATE INDEX network_members_host ON network_members (host_id);
    CREATE TABLE network_policies (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        action TEXT NOT NULL,
        from_selector TEXT NOT NULL,
        to_selector TEXT NOT NULL,
        ports TEXT NOT NULL DEFAULT '[]',
        protocol TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    );
    CREATE INDEX network_policies_network ON network_policies (network_id, position);
    CREATE TABLE mesh_hosts (
        id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        mesh_address TEXT NOT NULL UNIQUE,
        endpoint TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE mesh_joins (
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        mesh_address TEXT NOT NULL UNIQUE,
        expires_at REAL NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    """,
    ),
)

JSON_COLUMNS: Mapping[str, frozenset[str]] = {
    "hosts": frozenset({"overview", "capabilities", "cached_images", "addresses"}),
    "blueprints": frozenset({"metadata"}),
    "sandboxes": frozenset({"command", "env"}),
    "registry_credentials": frozenset({"actions"}),
    "terminal_sessions": frozenset({"command", "env"}),
    "clusters": frozenset(),
    "provisioning_tokens": frozenset(),
    "volumes": frozenset({"labels", "realized_host_ids"}),
    "volume_attachments": frozenset(),
    "volume_filesystems": frozenset(),
    "networks": frozenset(),
    "network_members": frozenset({"aliases", "ports"}),
    "network_policies": frozenset({"ports"}),
    "mesh_hosts": frozenset(),
    "mesh_joins": frozenset(),
}

TABLES = frozenset({"api_keys", *JSON_COLUMNS})


class Store:
    """Typed-by-table access to the SQLite file. Rows come and go as dicts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {
            name for (name,) in self._db.execute("SELECT name FROM schema_migrations")
        }
        for name, script in MIGRATIONS:
            if name in applied:
                continue
            with self._db:
                self._db.execute("BEGIN")
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_migrations VALUES (?, datetime('now'))", (name,)
                )

    def insert(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        """Insert one row; raises sqlite3.IntegrityError on a unique clash."""
        encoded = self._encode(table, row)
        columns = ", ".join(encoded)
        marks = ", ".join("?" for _ in encoded)
        self._db.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(encoded.values())
        )
        return dict(row)

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        cursor = self._db.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        found = cursor.fetchone()
        return self._decode(table, found) if found else None

    def find_one(self, table: str, **where: Any) -> dict[str, Any] | None:
        rows = self.select(table, limit=1, **where)
        return rows[0] if rows else None

    def select(
        self,
        table: str,
        *,
        limit: int | None = None,
        after_id: str | None = None,
        order: str = "id",
        **where: Any,
    ) -> list[dict[str, Any]]:
        """Rows matching every `column=value`; a tuple value means `IN`."""
        self._check_table(table)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in where.items():
            if isinstance(value, tuple):
                clauses.append(f"{column} IN ({', '.join('?' for _ in value)})")
                params.extend(value)
            elif value is None:
                clauses.append(f"{column} IS NULL")
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        sql = f"SELECT * FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._decode(table, r) for r in self._db.execute(sql, params)]

    def count(self, table: str, **where: Any) -> int:
        self._check_table(table)
        clauses = []
        params: list[Any] = []
        for column, value in where.items():
            if isinstance(value, tuple):
                clauses.append(f"{column} IN ({', '.join('?' for _ in value)})")
                params.extend(value)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT COUNT(*) FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        (n,) = self._db.execute(sql, params).fetchone()
        return int(n)

    def update(self, table: str, row_id: str, **fields: Any) -> dict[str, Any] | None:
        """Set `fields` on one row; returns the row as it is afterwards."""
        if fields:
            encoded = self._encode(table, fields)
            assignments = ", ".join(f"{column} = ?" for column in encoded)
            self._db.execute(
                f"UPDATE {table} SET {assignments} WHERE id = ?",
                (*encoded.values(), row_id),
            )
        return self.get(table, row_id)

    def append_activity(
        self, sandbox_id: str, kind: str, details: Mapping[str, Any], created_at: str
    ) -> None:
        self._db.execute(
            "INSERT INTO sandbox_activity (sandbox_id, kind, details, created_at) "
            "VALUES (?, ?, ?, ?)",
            (sandbox_id, kind, json.dumps(details), created_at),
        )

    def activity_page(
        self, sandbox_id: str, limit: int, before_seq: int | None
    ) -> list[dict[str, Any]]:
        """Activity of one sandbox, newest first, older than `before_seq` if given."""
        sql = "SELECT * FROM sandbox_activity WHERE sandbox_id = ?"
        params: list[Any] = [sandbox_id]
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        return [
            {
                "id": f"act_{row['seq']}",
                "sandbox_id": row["sandbox_id"],
                "kind": row["kind"],
                "details": json.loads(row["details"]),
                "created_at": row["created_at"],
            }
            for row in self._db.execute(sql, params)
        ]

    def delete(self, table: str, row_id: str) -> bool:
        self._check_table(table)
        cursor = self._db.execute(f"DELETE FROM {table} WHERE id = ?", (row_id,))
        return cursor.rowcount > 0

    def delete_where(
        self, table: str, sql_condition: str, params: Iterable[Any]
    ) -> int:
        self._check_table(table)
        cursor = self._db.execute(
            f"DELETE FROM {table} WHERE {sql_condition}", tuple(params)
        )
        return cursor.rowcount

    def _check_table(self, table: str) -> None:
        # Table names are interpolated into SQL, so only our own constants may pass.
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")

    def _encode(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        self._check_table(table)
        json_columns = JSON_COLUMNS.get(table, frozenset())
        return {
            column: json.dumps(value)
            if column in json_columns and value is not None
            else value
            for column, value in row.items()
        }

    def _decode(self, table: str, row: sqlite3.Row) -> dict[str, Any]:
        json_columns = JSON_COLUMNS.get(table, frozenset())
        decoded = dict(row)
        for column in json_columns:
            if decoded.get(column) is not None:
                decoded[column] = json.loads(decoded[column])
        return decoded
