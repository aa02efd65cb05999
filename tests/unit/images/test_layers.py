"""unpack_layer: tar semantics, overlayfs whiteouts, and refusal of every escape.

Each malicious layer below aims at a real directory (`victim`) next to the layer
directory, so a failure of the defence would show up as a changed `victim` rather than
as damage to the host. Every escape test checks both that the layer is refused and
that nothing at all changed outside the destination.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from gstacks_agent.images import media_types
from gstacks_agent.images.errors import (
    MalformedLayer,
    UnsafeLayer,
    UnsupportedMediaType,
)
from gstacks_agent.images.layers import OVERLAY_OPAQUE_XATTR, unpack_layer

# chown to arbitrary ids, mknod and trusted.* xattrs all need root.
pytestmark = pytest.mark.root

MTIME = 1_600_000_000


def regular(name, data=b"", mode=0o644, uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.mtime = (
        len(data),
        mode,
        uid,
        gid,
        MTIME,
    )
    return info, data


def directory(name, mode=0o755, uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = (
        tarfile.DIRTYPE,
        mode,
        uid,
        gid,
        MTIME,
    )
    return info, None


def symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = (
        tarfile.SYMTYPE,
        target,
        0o777,
        MTIME,
    )
    return info, None


def hardlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = tarfile.LNKTYPE, target, MTIME
    return info, None


def device(name, kind, major, minor, mode=0o666):
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor, info.mode, info.mtime = (
        kind,
        major,
        minor,
        mode,
        MTIME,
    )
    return info, None


def write_tar(path: Path, entries, compression="") -> Path:
    with tarfile.open(path, f"w:{compression}", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path) -> dict:
    """Everything observable about a tree: type, mode, owner, size, mtime, content."""
    seen = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        target = os.readlink(path) if path.is_symlink() else None
        seen[str(path.relative_to(root))] = (
            info.st_mode,
            info.st_uid,
            info.st_nlink,
            info.st_mtime_ns,
            content,
            target,
        )
    return seen


@pytest.fixture
def site(tmp_path):
    """A victim tree beside an empty layers directory."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "secret").write_bytes(b"original")
    layers = tmp_path / "layers"
    layers.mkdir()
    return tmp_path


def assert_refused_without_trace(site: Path, entries, error=UnsafeLayer, match=None):
    blob = write_tar(site / "layer.tar", entries)
    before = snapshot(site / "victim")

    with pytest.raises(error, match=match):
        unpack_layer(blob, media_types.OCI_LAYER_TAR, site / "layers" / "l1")

    assert list((site / "layers").iterdir()) == []
    assert snapshot(site / "victim") == before
    assert sorted(p.name for p in site.iterdir()) == ["layer.tar", "layers", "victim"]


def test_absolute_path_is_refused(site):
    target = site / "victim" / "pwned"
    assert_refused_without_trace(
        site, [regular("ok", b"fine"), regular(str(target), b"x")], match="absolute"
    )
    assert not target.exists()


def test_absolute_path_overwriting_existing_file_is_refused(site):
    assert_refused_without_trace(
        site, [regular(str(site / "victim/secret"), b"x")], match="absolute"
    )


def test_dotdot_path_is_refused(site):
    assert_refused_without_trace(
        site, [regular("../../victim/pwned", b"x")], match="'..'"
    )


def test_dotdot_in_the_middle_is_refused(site):
    assert_refused_without_trace(
        site, [directory("a"), regular("a/../../../victim/secret", b"x")], match="'..'"
    )


def test_file_under_absolute_symlink_parent_is_refused(site):
    # The classic: evil -> /etc, then evil/passwd.
    entries = [symlink("evil", str(site / "victim")), regular("evil/secret", b"x")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_file_under_relative_symlink_parent_is_refused(site):
    entries = [symlink("evil", "../../victim"), regular("evil/pwned", b"x")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_directory_under_symlink_parent_is_refused(site):
    entries = [symlink("evil", str(site / "victim")), directory("evil/sub")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_symlink_parent_deeper_in_the_path_is_refused(site):
    entries = [
        directory("usr"),
        symlink("usr/lib", str(site / "victim")),
        regular("usr/lib/x/pwned", b"x"),
    ]
    assert_refused_without_trace(site, entries, match="symlink 'usr/lib'")


def test_whiteout_under_symlink_parent_is_refused(site):
    entries = [symlink("evil", str(site / "victim")), regular("evil/.wh.secret")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_opaque_marker_under_symlink_parent_is_refused(site):
    entries = [symlink("evil", str(site / "victim")), regular("evil/.wh..wh..opq")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_hardlink_to_absolute_target_is_refused(site):
    entries = [hardlink("stolen", str(site / "victim" / "secret"))]
    assert_refused_without_trace(site, entries, match="absolute")


def test_hardlink_with_dotdot_target_is_refused(site):
    entries = [hardlink("stolen", "../../victim/secret")]
    assert_refused_without_trace(site, entries, match="'..'")


def test_hardlink_through_symlink_parent_is_refused(site):
    entries = [symlink("evil", str(site / "victim")), hardlink("stolen", "evil/secret")]
    assert_refused_without_trace(site, entries, match="symlink 'evil'")


def test_hardlink_to_missing_target_is_malformed(site):
    assert_refused_without_trace(
        site, [hardlink("h", "nowhere")], error=MalformedLayer, match="target"
    )


def test_whiteout_of_dotdot_is_refused(site):
    assert_refused_without_trace(site, [regular("a/.wh...")], match="names no entry")


def test_hardlink_to_symlink_links_the_symlink_itself(site):
    # linkat without AT_SYMLINK_FOLLOW: the new name is the symlink, not the victim.
    blob = write_tar(
        site / "layer.tar",
        [symlink("s", str(site / "victim" / "secret")), hardlink("h", "s")],
    )
    before = snapshot(site / "victim")

    unpack_layer(blob, media_types.OCI_LAYER_TAR, site / "layers" / "l1")

    linked = site / "layers" / "l1" / "h"
    assert linked.is_symlink()
    assert os.readlink(linked) == str(site / "victim" / "secret")
    assert snapshot(site / "victim") == before


def test_file_entry_replaces_symlink_instead_of_writing_through_it(site):
    blob = write_tar(
        site / "layer.tar",
        [symlink("x", str(site / "victim" / "secret")), regular("x", b"layer data")],
    )
    before = snapshot(site / "victim")

    unpack_layer(blob, media_types.OCI_LAYER_TAR, site / "layers" / "l1")

    replaced = site / "layers" / "l1" / "x"
    assert not replaced.is_symlink()
    assert replaced.read_bytes() == b"layer data"
    assert snapshot(site / "victim") == before


def test_regular_layer_keeps_modes_owners_times_and_links(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar.gz",
        [
            directory("./"),
            directory("bin", mode=0o755),
            regular("bin/tool", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
            regular("bin/data", b"payload", mode=0o640, uid=1000, gid=1001),
            hardlink("bin/data-again", "bin/data"),
            symlink("bin/sh", "/bin/busybox"),
            directory("tmp", mode=0o1777),
            regular("deep/er/file", b"no parents in the tar"),
        ],
        compression="gz",
    )
    dest = tmp_path / "l1"

    unpack_layer(blob, media_types.OCI_LAYER_GZIP, dest)

    tool = (dest / "bin/tool").stat()
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    data = (dest / "bin/data").stat()
    assert (stat.S_IMODE(data.st_mode), data.st_uid, data.st_gid) == (0o640, 1000, 1001)
    assert data.st_mtime == MTIME
    assert data.st_nlink == 2
    assert (dest / "bin/data-again").stat().st_ino == data.st_ino
    assert os.readlink(dest / "bin/sh") == "/bin/busybox"
    assert (dest / "bin/sh").lstat().st_mtime == MTIME
    assert stat.S_IMODE((dest / "tmp").stat().st_mode) == 0o1777
    assert (dest / "bin").stat().st_mtime == MTIME
    assert (dest / "deep/er/file").read_bytes() == b"no parents in the tar"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_later_entry_with_same_name_wins(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar",
        [
            regular("a", b"first"),
            regular("a", b"second"),
            regular("d/x", b"in a dir"),
            regular("d", b"file replaces dir"),
        ],
    )

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    assert (tmp_path / "l1/a").read_bytes() == b"second"
    assert (tmp_path / "l1/d").read_bytes() == b"file replaces dir"


def test_whiteout_becomes_overlay_char_device(tmp_path):
    blob = write_tar(tmp_path / "layer.tar", [regular("etc/.wh.motd")])

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    found = (tmp_path / "l1/etc/motd").lstat()
    assert stat.S_ISCHR(found.st_mode)
    assert found.st_rdev == os.makedev(0, 0)
    assert not (tmp_path / "l1/etc/.wh.motd").exists()


def test_opaque_marker_becomes_overlay_xattr(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar",
        [directory("var/cache"), regular("var/cache/.wh..wh..opq"), regular("var/x")],
    )

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    assert os.getxattr(tmp_path / "l1/var/cache", OVERLAY_OPAQUE_XATTR) == b"y"
    assert list((tmp_path / "l1/var/cache").iterdir()) == []
    with pytest.raises(OSError):
        os.getxattr(tmp_path / "l1/var", OVERLAY_OPAQUE_XATTR)


def test_whiteout_keeps_same_layer_directory_and_makes_it_opaque(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar",
        [directory("opt/app"), regular("opt/app/new", b"n"), regular("opt/.wh.app")],
    )

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    assert (tmp_path / "l1/opt/app/new").read_bytes() == b"n"
    assert os.getxattr(tmp_path / "l1/opt/app", OVERLAY_OPAQUE_XATTR) == b"y"


def test_directory_after_its_whiteout_is_opaque(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar",
        [regular("opt/.wh.app"), directory("opt/app"), regular("opt/app/new", b"n")],
    )

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    assert (tmp_path / "l1/opt/app").is_dir()
    assert os.getxattr(tmp_path / "l1/opt/app", OVERLAY_OPAQUE_XATTR) == b"y"


def test_device_nodes_and_fifos_are_created(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar",
        [
            device("dev/null", tarfile.CHRTYPE, 1, 3),
            device("dev/loop9", tarfile.BLKTYPE, 7, 9, mode=0o660),
            device("run/pipe", tarfile.FIFOTYPE, 0, 0, mode=0o620),
        ],
    )

    unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")

    null = (tmp_path / "l1/dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (tmp_path / "l1/dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 9)
    pipe = (tmp_path / "l1/run/pipe").lstat()
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o620


def test_truncated_layer_is_malformed_and_leaves_nothing(tmp_path):
    blob = write_tar(
        tmp_path / "layer.tar", [regular("big", os.urandom(100_000))], compression="gz"
    )
    blob.write_bytes(blob.read_bytes()[:50_000])

    with pytest.raises(MalformedLayer):
        unpack_layer(blob, media_types.OCI_LAYER_GZIP, tmp_path / "layers-l1")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer.tar"]


def test_garbage_is_malformed(tmp_path):
    blob = tmp_path / "layer"
    blob.write_bytes(b"this is not gzip at all" * 10)

    with pytest.raises(MalformedLayer):
        unpack_layer(blob, media_types.DOCKER_LAYER_GZIP, tmp_path / "l1")
    assert not (tmp_path / "l1").exists()


def test_unknown_media_type_is_refused(tmp_path):
    blob = write_tar(tmp_path / "layer.tar", [regular("a")])
    with pytest.raises(UnsupportedMediaType):
        unpack_layer(blob, "application/x-rar", tmp_path / "l1")


def test_zstd_without_module_is_refused(tmp_path):
    try:
        import zstandard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("zstandard is installed here")
    blob = write_tar(tmp_path / "layer.tar", [regular("a")])
    with pytest.raises(UnsupportedMediaType):
        unpack_layer(blob, media_types.OCI_LAYER_ZSTD, tmp_path / "l1")


def test_existing_dest_is_refused(tmp_path):
    blob = write_tar(tmp_path / "layer.tar", [regular("a")])
    (tmp_path / "l1").mkdir()
    with pytest.raises(ValueError, match="must not exist"):
        unpack_layer(blob, media_types.OCI_LAYER_TAR, tmp_path / "l1")


def test_built_layer_unpacks_to_what_went_in(tmp_path):
    from gstacks_agent.images.layer_builder import LayerEntry, write_layer

    entries = [
        LayerEntry.directory("bin"),
        LayerEntry("bin/tool", "file", 0o755, uid=5, gid=6, data=b"tool"),
        LayerEntry.symlink("bin/sh", "tool"),
        LayerEntry.hardlink("bin/tool-again", "bin/tool"),
    ]
    with open(tmp_path / "layer.tar.gz", "wb") as out:
        layer = write_layer(entries, out, mtime=MTIME)

    unpack_layer(tmp_path / "layer.tar.gz", layer.media_type, tmp_path / "l1")

    tool = (tmp_path / "l1/bin/tool").stat()
    assert (tool.st_uid, tool.st_gid, tool.st_nlink) == (5, 6, 2)
    assert (tmp_path / "l1/bin/tool-again").read_bytes() == b"tool"
    assert os.readlink(tmp_path / "l1/bin/sh") == "tool"
