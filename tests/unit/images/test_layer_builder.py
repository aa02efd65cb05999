from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from gstacks_agent.images.digests import Digest
from gstacks_agent.images.layer_builder import (
    LayerEntry,
    entries_from_directory,
    write_layer,
)
from gstacks_agent.images.oci_layout import ImageConfig, OciLayout

ENTRIES = [
    LayerEntry.file("etc/hostname", b"box\n"),
    LayerEntry.directory("etc"),
    LayerEntry.directory("bin"),
    LayerEntry("bin/tool", "file", 0o4755, uid=0, gid=0, data=b"\x7fELF"),
    LayerEntry.symlink("bin/sh", "tool"),
    LayerEntry.hardlink("bin/tool2", "bin/tool"),
]


def build(entries, **options):
    out = io.BytesIO()
    layer = write_layer(entries, out, **options)
    return layer, out.getvalue()


def test_same_entries_give_the_same_bytes_in_any_order():
    first, first_bytes = build(ENTRIES)
    second, second_bytes = build(list(reversed(ENTRIES)))
    assert first_bytes == second_bytes
    assert first == second


def test_digest_covers_the_blob_and_diff_id_the_tar():
    layer, blob = build(ENTRIES)
    tar = gzip.decompress(blob)
    assert layer.digest == Digest("sha256:" + hashlib.sha256(blob).hexdigest())
    assert layer.diff_id == Digest("sha256:" + hashlib.sha256(tar).hexdigest())
    assert layer.size == len(blob)
    assert layer.media_type.endswith("tar+gzip")


def test_uncompressed_layer_has_equal_digests():
    layer, blob = build(ENTRIES, compress=False)
    assert layer.digest == layer.diff_id == Digest.of_bytes(blob)
    assert layer.media_type.endswith(".tar")


def test_entries_are_written_sorted_with_fixed_metadata():
    _, blob = build(ENTRIES, mtime=1234)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [
        "bin",
        "bin/sh",
        "bin/tool",
        "bin/tool2",
        "etc",
        "etc/hostname",
    ]
    assert {m.mtime for m in members} == {1234}
    assert {m.uname for m in members} == {""}
    assert members[2].mode == 0o4755
    assert members[3].islnk() and members[3].linkname == "bin/tool"


def test_hardlink_before_its_target_is_refused():
    with pytest.raises(ValueError, match="must follow its target"):
        build([LayerEntry.hardlink("a", "b"), LayerEntry.file("b")])


@pytest.mark.parametrize("path", ["/abs", "a/../b", ""])
def test_unsafe_entry_paths_are_refused(path):
    with pytest.raises(ValueError, match="path must be relative"):
        LayerEntry.file(path)


def test_directory_entries_keep_modes_symlinks_and_hardlinks(tmp_path):
    root = tmp_path / "root"
    (root / "z").mkdir(parents=True)
    (root / "z" / "data").write_bytes(b"shared")
    (root / "a").mkdir()
    os.link(root / "z" / "data", root / "a" / "first-by-sort")
    os.symlink("../z/data", root / "a" / "link")
    os.chmod(root / "z", 0o750)

    entries = {entry.path: entry for entry in entries_from_directory(root)}

    assert entries["z"].mode == 0o750
    assert entries["a/link"].kind == "symlink"
    assert entries["a/link"].target == "../z/data"
    # The name that sorts first carries the content; the other links to it.
    assert entries["a/first-by-sort"].kind == "file"
    assert entries["z/data"].kind == "hardlink"
    assert entries["z/data"].target == "a/first-by-sort"
    build(entries.values())


def test_oci_layout_has_index_config_and_manifest(tmp_path):
    layout = OciLayout(tmp_path / "oci")
    layer = layout.add_layer(ENTRIES)
    config = ImageConfig(
        entrypoint=["/bin/sh"], cmd=["-c", "true"], env=["A=1"], user="65534"
    )

    entry = layout.add_image(config, [layer], tag="v1")
    layout.add_image(config, [layer], tag="v1")

    index = json.loads((tmp_path / "oci" / "index.json").read_bytes())
    assert json.loads((tmp_path / "oci" / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }
    [listed] = index["manifests"]
    assert listed["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert listed["digest"] == entry.digest
    manifest_bytes = (layout.blobs / entry.digest.hex).read_bytes()
    assert Digest.of_bytes(manifest_bytes) == entry.digest
    manifest = json.loads(manifest_bytes)
    assert manifest["layers"][0]["digest"] == layer.digest
    stored_config = json.loads(
        (layout.blobs / Digest(manifest["config"]["digest"]).hex).read_bytes()
    )
    assert stored_config["rootfs"]["diff_ids"] == [layer.diff_id]
    assert stored_config["config"]["Entrypoint"] == ["/bin/sh"]
    assert stored_config["config"]["User"] == "65534"
    assert sorted(p.name for p in layout.blobs.iterdir()) == sorted(
        [layer.digest.hex, entry.digest.hex, manifest["config"]["digest"][7:]]
    )
