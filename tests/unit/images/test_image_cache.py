"""ImageCache without a registry: local bookkeeping only.

Pulling is tested against a real registry in tests/integration/images.
"""

from __future__ import annotations

from gstacks_agent.images.digests import Digest
from gstacks_agent.images.image_cache import ImageCache


def test_fresh_cache_is_empty(tmp_path):
    cache = ImageCache(tmp_path)
    assert cache.cached_images() == []
    assert not cache.has(Digest.of_bytes(b"anything"))
    assert (tmp_path / "images" / "blobs" / "sha256").is_dir()


def test_leftovers_of_interrupted_pulls_are_removed(tmp_path):
    cache = ImageCache(tmp_path)
    kept = Digest.of_bytes(b"kept")
    cache.store.ingest_bytes(kept, b"kept")
    (cache.store.root / "blobs" / "sha256" / ".tmp-abc-0001").write_bytes(b"part")
    half_layer = cache.layers_dir / ".tmp-abc-0002"
    (half_layer / "usr" / "bin").mkdir(parents=True)
    (half_layer / "usr" / "bin" / "x").write_bytes(b"x")
    (cache.layers_dir / kept.hex).mkdir()
    (cache.records_dir / ".tmp-abc-0003").write_text("{")

    assert cache.remove_temp_files() == 3

    assert cache.store.list_digests() == [kept]
    assert [p.name for p in cache.layers_dir.iterdir()] == [kept.hex]
    assert list(cache.records_dir.iterdir()) == []
