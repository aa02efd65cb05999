"""Records render as aligned tables and as `key: value` lines."""

from __future__ import annotations

from gstacks_cli.output import (
    Column,
    field,
    format_bytes,
    format_json,
    format_record,
    format_scalar,
    format_table,
)


def test_table_pads_columns_to_the_widest_cell():
    rows = [{"id": "sbx_1", "status": "running"}, {"id": "sbx_long", "status": None}]

    table = format_table(rows, [field("id"), field("status")])

    assert table.splitlines() == [
        "ID        STATUS",
        "sbx_1     running",
        "sbx_long  -",
    ]


def test_empty_table_is_its_header():
    assert format_table([], [field("id"), Column("AGE", lambda r: "")]) == "ID  AGE"


def test_scalars_render_on_one_line():
    assert format_scalar(None) == "-"
    assert format_scalar("") == "-"
    assert format_scalar([]) == "-"
    assert format_scalar(False) == "false"
    assert format_scalar(0) == "0"
    assert format_scalar(["sh", "-c", "true"]) == "sh, -c, true"
    assert format_scalar("two\nlines") == "two lines"


def test_record_indents_nested_mappings_and_lists_of_mappings():
    host = {
        "id": "host_1",
        "capabilities": ["runc", "overlay"],
        "overview": {"cpu_count": 4, "kernel": "6.1.0"},
        "cached_images": [{"digest": "sha256:ab", "size_bytes": 10}],
        "env": {},
    }

    assert format_record(host).splitlines() == [
        "id: host_1",
        "capabilities: runc, overlay",
        "overview:",
        "  cpu_count: 4",
        "  kernel: 6.1.0",
        "cached_images:",
        "  - digest=sha256:ab, size_bytes=10",
        "env: -",
    ]


def test_bytes_use_binary_units():
    assert format_bytes(None) == "-"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(8 * 2**30) == "8.0 GiB"
    assert format_bytes(3 * 2**50) == "3072.0 TiB"


def test_json_keeps_server_key_order_and_unicode():
    assert format_json({"b": 1, "a": "é"}) == '{\n  "b": 1,\n  "a": "é"\n}'
