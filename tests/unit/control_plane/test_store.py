from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from control_plane_lite.store import Store


def host_row(host_id: str, **extra: object) -> dict:
    return {
        "id": host_id,
        "name": host_id,
        "tenant_id": "t",
        "credential_hash": f"hash-{host_id}",
        "status": "disconnected",
        "created_at": "2026-01-01T00:00:00Z",
        **extra,
    }


def test_rows_round_trip_with_json_columns(tmp_path: Path):
    store = Store(tmp_path / "cp.db")
    store.insert(
        "hosts",
        host_row("host_a", capabilities=["runc", "fuse"], overview={"cpu_count": 2}),
    )
    row = store.get("hosts", "host_a")
    assert row["capabilities"] == ["runc", "fuse"]
    assert row["overview"] == {"cpu_count": 2}
    updated = store.update("hosts", "host_a", status="connected", capabilities=[])
    assert updated["status"] == "connected" and updated["capabilities"] == []


def test_state_survives_reopening_and_uses_wal(tmp_path: Path):
    path = tmp_path / "cp.db"
    store = Store(path)
    store.insert("hosts", host_row("host_a"))
    store.close()
    reopened = Store(path)
    assert reopened.get("hosts", "host_a") is not None
    (mode,) = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_select_filters_pages_and_counts(tmp_path: Path):
    store = Store(tmp_path / "cp.db")
    for name in ("host_a", "host_b", "host_c", "host_d"):
        store.insert(
            "hosts",
            host_row(name, status="connected" if name < "host_c" else "disconnected"),
        )
    assert [r["id"] for r in store.select("hosts", limit=2)] == ["host_a", "host_b"]
    assert [r["id"] for r in store.select("hosts", limit=2, after_id="host_b")] == [
        "host_c",
        "host_d",
    ]
    assert store.count("hosts", status="connected") == 2
    assert store.count("hosts", status=("connected", "disconnected")) == 4


def test_unique_clash_raises_and_unknown_tables_are_refused(tmp_path: Path):
    store = Store(tmp_path / "cp.db")
    store.insert("hosts", host_row("host_a"))
    with pytest.raises(sqlite3.IntegrityError):
        store.insert("hosts", host_row("host_b", credential_hash="hash-host_a"))
    with pytest.raises(ValueError, match="unknown table"):
        store.select("sqlite_master")
