"""The embedded OCI registry: the distribution API over a pluggable blob storage.

Build it with `build_registry_app(storage, authorizer)` and serve or mount it; the
storage (`FilesystemStorage`) and the authorizer (`RegistryAuthorizer`) are the two
things a caller supplies.
"""

from .app import build_registry_app
from .authorization import AllowAllAuthorizer, RegistryAuthorizer, StaticBasicAuthorizer
from .errors import RegistryDenied, RegistryError, RegistryUnauthorized
from .storage import BlobStorage, FilesystemStorage

__all__ = [
    "AllowAllAuthorizer",
    "BlobStorage",
    "FilesystemStorage",
    "RegistryAuthorizer",
    "RegistryDenied",
    "RegistryError",
    "RegistryUnauthorized",
    "StaticBasicAuthorizer",
    "build_registry_app",
]
