"""Choosing the registry's storage driver from the control plane's configuration.

The filesystem driver under `<state dir>/registry` is the default. Setting an S3
bucket selects the S3 driver; the settings come from the environment (or the
config object a caller builds), never from the API:

    GSTACKS_REGISTRY_S3_ENDPOINT          http(s)://host:port of the S3 server
    GSTACKS_REGISTRY_S3_BUCKET            the bucket (must exist)
    GSTACKS_REGISTRY_S3_REGION            default us-east-1
    GSTACKS_REGISTRY_S3_PREFIX            key prefix inside the bucket, default none
    GSTACKS_REGISTRY_S3_CREDENTIALS_FILE  a secret reference: a file of
                                          `access_key_id=...` and
                                          `secret_access_key=...` lines

Without a credentials file the keys come from `GSTACKS_REGISTRY_S3_ACCESS_KEY_ID`
and `GSTACKS_REGISTRY_S3_SECRET_ACCESS_KEY`, or else from the usual
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gstacks_agent.errors import InvalidArgument

from .s3_client import S3Client, S3Credentials
from .s3_storage import S3Storage
from .storage import BlobStorage, FilesystemStorage

ENV_PREFIX = "GSTACKS_REGISTRY_S3_"
DEFAULT_REGION = "us-east-1"


class S3SettingsInvalid(InvalidArgument):
    """The S3 settings are incomplete or their credentials cannot be read."""


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 driver keeps the registry, and how it logs in."""

    endpoint: str
    bucket: str
    credentials: S3Credentials
    region: str = DEFAULT_REGION
    prefix: str = ""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> S3Settings | None:
        """Settings from GSTACKS_REGISTRY_S3_*; None when no endpoint is set."""
        endpoint = env.get(ENV_PREFIX + "ENDPOINT", "").strip()
        if not endpoint:
            return None
        bucket = env.get(ENV_PREFIX + "BUCKET", "").strip()
        if not bucket:
            raise S3SettingsInvalid(
                f"{ENV_PREFIX}ENDPOINT is set but {ENV_PREFIX}BUCKET is not"
            )
        return cls(
            endpoint=endpoint,
            bucket=bucket,
            credentials=_credentials(env),
            region=env.get(ENV_PREFIX + "REGION", "").strip() or DEFAULT_REGION,
            prefix=env.get(ENV_PREFIX + "PREFIX", "").strip(),
        )


def read_credentials_file(path: Path) -> S3Credentials:
    """Keys from a secret reference file of `name=value` lines."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise S3SettingsInvalid(
            f"cannot read S3 credentials file {path}: {exc}"
        ) from exc
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.strip().startswith("#"):
            values[name.strip()] = value.strip()
    if not values.get("access_key_id") or not values.get("secret_access_key"):
        raise S3SettingsInvalid(
            f"S3 credentials file {path} needs access_key_id= and secret_access_key="
        )
    return S3Credentials(
        values["access_key_id"],
        values["secret_access_key"],
        values.get("session_token") or None,
    )


def _credentials(env: Mapping[str, str]) -> S3Credentials:
    reference = env.get(ENV_PREFIX + "CREDENTIALS_FILE", "").strip()
    if reference:
        return read_credentials_file(Path(reference))
    key_id = env.get(ENV_PREFIX + "ACCESS_KEY_ID") or env.get("AWS_ACCESS_KEY_ID")
    secret = env.get(ENV_PREFIX + "SECRET_ACCESS_KEY") or env.get(
        "AWS_SECRET_ACCESS_KEY"
    )
    if not key_id or not secret:
        raise S3SettingsInvalid(
            f"S3 storage needs credentials: set {ENV_PREFIX}CREDENTIALS_FILE, or "
            f"{ENV_PREFIX}ACCESS_KEY_ID and {ENV_PREFIX}SECRET_ACCESS_KEY"
        )
    return S3Credentials(key_id, secret, env.get("AWS_SESSION_TOKEN") or None)


def open_storage(state_dir: Path, s3: S3Settings | None) -> BlobStorage:
    """The S3 driver when `s3` is set, else the filesystem driver in the state dir."""
    if s3 is None:
        return FilesystemStorage(state_dir / "registry")
    client = S3Client(s3.endpoint, s3.region, s3.bucket, s3.credentials)
    return S3Storage(client, s3.prefix)
