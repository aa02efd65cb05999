"""Images: pull OCI images by digest, keep their blobs, unpack their layers.

`ImageCache.ensure` is the entry point the sandbox code uses: it turns a repository
and a manifest digest into a list of unpacked layer directories ready to be stacked as
overlayfs lowerdirs. The other modules are its parts and can be used on their own.
"""
