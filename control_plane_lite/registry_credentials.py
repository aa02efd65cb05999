"""Registry credentials and the short-lived tokens of the registry token flow.

How it works
------------
Three kinds of secret open the embedded registry, told apart by their prefix:

    gsk_...   a user API key: every repository of its tenant, every action
    grc_...   a registry credential from `POST /api/registry/credentials` (or
              issued to an agent over its channel): one repository, pull or push,
              optionally one manifest digest, for a TTL; stored as its SHA-256
    grt_...   a token from the token endpoint `/api/registry/token`: the scopes a
              client asked for, cut down to what the secret it logged in with
              allows, valid for TOKEN_TTL_S; signed, never stored

Clients that speak the Docker token flow (skopeo, docker, oras) meet a 401 with
`WWW-Authenticate: Bearer realm="<url>/api/registry/token",service=...,scope=...`,
call the realm with HTTP Basic (password = an API key or a registry credential),
and send the token they get back as `Authorization: Bearer`. Clients that already
hold a secret may also send it directly, as Basic or Bearer.

A token is `grt_<payload>.<signature>`: the payload is base64url JSON naming the
tenant, the subject, the granted `repository -> actions` map, the optional artifact
digest and the expiry; the signature is HMAC-SHA256 over the payload with a key
kept in a 0600 file in the state dir, so tokens survive a restart and verifying one
costs no database read. Scope strings follow the Docker registry token spec:
`repository:<name>:<action>[,<action>]`, where `*` and `delete` ask for everything
and a push grant covers deletes, as the registry routes expect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane_lite import ids
from control_plane_lite.auth import Authenticator, hash_secret, write_secret_file
from control_plane_lite.clock import now_rfc3339, now_unix, rfc3339
from control_plane_lite.errors import (
    InvalidRequest,
    PermissionDenied,
    Unauthenticated,
)
from control_plane_lite.registry.errors import RegistryError
from control_plane_lite.registry.names import Digest, validate_repository
from control_plane_lite.store import Store
from gstacks_proto import pb

log = logging.getLogger("gstacks.cp.registry_credentials")

ACTIONS = ("pull", "push")
DEFAULT_TTL_S = 15 * 60
MAX_TTL_S = 12 * 60 * 60
TOKEN_TTL_S = 5 * 60
SERVICE = "gstacks-registry"
TOKEN_KEY_FILE = "registry-token-key"
CREDENTIAL_FIELDS = frozenset({"repository", "action", "artifact", "ttl_s"})

_TOKEN_PREFIX = "grt_"
# Docker registry token spec, "Scope": type ":" name ":" actions.
_SCOPE_RE = re.compile(
    r"(?P<type>[a-z0-9]+):(?P<name>[A-Za-z0-9._/:-]+):(?P<actions>[a-z*]+(?:,[a-z*]+)*)"
)
_CREDENTIAL_PREFIX = "grc_"


@dataclass(frozen=True)
class RegistryGrant:
    """What one presented secret allows in the registry.

    `access` maps repositories to actions; a user grant (`everything`) ignores it.
    `artifact`, when set, narrows manifest reads by digest to that one digest.
    """

    kind: str  # "user" | "credential" | "token"
    subject: str
    tenant_id: str
    everything: bool = False
    access: Mapping[str, frozenset[str]] = field(default_factory=dict)
    artifact: str | None = None

    def allows(self, repository: str, action: str) -> bool:
        """True when `action` ("pull" or "push") on `repository` is granted."""
        return self.everything or action in self.access.get(repository, frozenset())

    def require(self, repository: str | None, action: str, digest: str | None) -> None:
        """Raise PermissionDenied unless `action` on `repository` is granted."""
        if self.everything:
            return
        if repository is None:
            raise PermissionDenied(f"a {self.kind} cannot {action} the whole registry")
        if repository not in self.access:
            scoped = ", ".join(sorted(self.access)) or "no repository"
            raise PermissionDenied(f"the {self.kind} is scoped to {scoped}")
        if action not in self.access[repository]:
            raise PermissionDenied(
                f"the {self.kind} does not allow {action} on {repository}"
            )
        if self.artifact and digest and not hmac.compare_digest(self.artifact, digest):
            raise PermissionDenied(
                f"the {self.kind} is scoped to artifact {self.artifact}"
            )


@dataclass(frozen=True)
class Scope:
    """One requested scope: `repository:<name>:<actions>` (Docker token spec)."""

    resource_type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scopes(texts: Iterable[str]) -> list[Scope]:
    """Parse scope strings, each possibly holding several space-separated scopes.

    The name may itself hold ':' (a registry host with a port), so the type is cut
    from the left and the actions from the right. A string outside that grammar
    raises ValueError; a well-formed scope this registry does not know (another
    resource type, an invalid repository name) is granted nothing later.
    """
    scopes = []
    for text in texts:
        for item in text.split(" "):
            match = _SCOPE_RE.fullmatch(item)
            if match is None:
                raise ValueError(
                    f"scope {item!r} is not '<type>:<name>:<action>[,<action>]'"
                )
            wanted = frozenset(match["actions"].split(","))
            scopes.append(Scope(match["type"], match["name"], wanted))
    return scopes


def _normalize_actions(actions: Iterable[str]) -> frozenset[str]:
    """Requested actions as this registry grants them: `*` and delete need push."""
    normal = set()
    for action in actions:
        if action in ("*", "delete", "push"):
            normal.update(("pull", "push") if action != "push" else ("push",))
        elif action == "pull":
            normal.add("pull")
    return frozenset(normal)


def is_token(secret: str) -> bool:
    """True for a realm token (as opposed to an API key or a credential)."""
    return secret.startswith(_TOKEN_PREFIX)


class RegistryCredentials:
    """Issues registry credentials and tokens, and turns any secret into a grant."""

    def __init__(self, store: Store, authenticator: Authenticator, key_file: Path):
        self._store = store
        self._auth = authenticator
        self._key = _load_or_create_key(key_file)

    # ---- long-lived credentials ---------------------------------------------------

    def issue(
        self,
        tenant_id: str,
        repository: str,
        action: str,
        artifact: str | None = None,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> tuple[dict[str, Any], str]:
        """A credential for one repository and action; push implies pull."""
        if action not in ACTIONS:
            raise InvalidRequest(
                f"action must be one of {', '.join(ACTIONS)}, not {action!r}"
            )
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidRequest(
                f"ttl_s must be between 1 and {MAX_TTL_S}, not {ttl_s}"
            )
        actions = ["pull", "push"] if action == "push" else ["pull"]
        secret = f"{_CREDENTIAL_PREFIX}{secrets.token_urlsafe(32)}"
        now = now_unix()
        row = self._store.insert(
            "registry_credentials",
            {
                "id": ids.new_id("registry_credential"),
                "token_hash": hash_secret(secret),
                "tenant_id": tenant_id,
                "repository": repository,
                "actions": actions,
                "artifact": artifact,
                "expires_at": now + ttl_s,
                "created_at": now_rfc3339(),
            },
        )
        # Expired rows are worthless; sweeping them here keeps the table small.
        self._store.delete_where(
            "registry_credentials", "expires_at < ?", (now - 3600,)
        )
        return row, secret

    def issue_from_request(
        self, tenant_id: str, subject: str, registry_host: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """`POST /api/registry/credentials`: validate the body, issue, shape the answer."""
        unknown = sorted(set(body) - CREDENTIAL_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"unknown fields: {', '.join(unknown)}", fields=unknown
            )
        repository, action = body.get("repository"), body.get("action", "pull")
        artifact, ttl_s = body.get("artifact"), body.get("ttl_s", DEFAULT_TTL_S)
        if not isinstance(repository, str):
            raise InvalidRequest("repository is required and must be a string")
        if not isinstance(action, str):
            raise InvalidRequest("action must be 'pull' or 'push'")
        # JSON has one number type: 60.0 is as whole a number of seconds as 60.
        if isinstance(ttl_s, float) and ttl_s.is_integer():
            ttl_s = int(ttl_s)
        if not isinstance(ttl_s, int) or isinstance(ttl_s, bool):
            raise InvalidRequest("ttl_s must be an integer number of seconds")
        if artifact is not None and not isinstance(artifact, str):
            raise InvalidRequest("artifact must be a digest string")
        try:
            validate_repository(repository)
            if artifact is not None:
                Digest.parse(artifact)
        except RegistryError as exc:
            raise InvalidRequest(exc.message) from exc

        row, secret = self.issue(tenant_id, repository, action, artifact, ttl_s)
        log.info(
            "registry credential %s: %s on %s for %s, %ss",
            row["id"],
            "/".join(row["actions"]),
            repository,
            subject,
            ttl_s,
        )
        return {
            "registry": registry_host,
            "repository": repository,
            "actions": row["actions"],
            "artifact": artifact,
            "username": "gstacks",
            "password": secret,
            "token": secret,
            "expires_at": rfc3339(row["expires_at"]),
        }

    async def issue_for_host(
        self, host_id: str, request: pb.RegistryCredentialRequest, registry_url: str
    ) -> pb.RegistryCredential:
        """A pull credential for an agent; agents never get push rights."""
        if request.action not in ("", "pull"):
            raise InvalidRequest(
                f"host {host_id} asked for {request.action!r}; agents may only pull"
            )
        host = self._store.get("hosts", host_id)
        if host is None:
            raise Unauthenticated(f"host {host_id} is not registered")
        try:
            validate_repository(request.repository)
            if request.artifact:
                Digest.parse(request.artifact)
        except RegistryError as exc:
            raise InvalidRequest(exc.message) from exc
        row, secret = self.issue(
            host["tenant_id"], request.repository, "pull", request.artifact or None
        )
        log.info(
            "registry credential %s: pull on %s for host %s",
            row["id"],
            request.repository,
            host_id,
        )
        return pb.RegistryCredential(
            registry_url=registry_url,
            token=secret,
            expires_at_unix=int(row["expires_at"]),
        )

    # ---- authentication --------------------------------------------------------------

    def authenticate(self, secret: str) -> RegistryGrant:
        """The grant behind an API key, a registry credential or a token."""
        if secret.startswith(_TOKEN_PREFIX):
            return self._verify_token(secret)
        if secret.startswith(_CREDENTIAL_PREFIX):
            return self._authenticate_credential(secret)
        principal = self._auth.authenticate_api_key(secret)
        return RegistryGrant(
            "user", principal.name, principal.tenant_id, everything=True
        )

    def _authenticate_credential(self, secret: str) -> RegistryGrant:
        row = self._store.find_one(
            "registry_credentials", token_hash=hash_secret(secret)
        )
        if row is None:
            raise Unauthenticated("the registry credential is not valid")
        if row["expires_at"] <= now_unix():
            raise Unauthenticated("the registry credential has expired")
        return RegistryGrant(
            "credential",
            row["id"],
            row["tenant_id"],
            access={row["repository"]: frozenset(row["actions"])},
            artifact=row["artifact"],
        )

    # ---- tokens -------------------------------------------------------------------------

    def issue_token(
        self, grant: RegistryGrant, scopes: list[Scope], ttl_s: int = TOKEN_TTL_S
    ) -> dict[str, Any]:
        """A token for the part of `scopes` that `grant` allows (maybe none of it).

        This is the realm's answer: `token` and `access_token` hold the same value
        because clients read one or the other (Docker token spec and OAuth2).
        """
        access: dict[str, list[str]] = {}
        for scope in scopes:
            if scope.resource_type != "repository":
                continue
            try:
                validate_repository(scope.name)
            except RegistryError:
                continue
            wanted = _normalize_actions(scope.actions)
            granted = {a for a in wanted if grant.allows(scope.name, a)}
            if granted:
                access[scope.name] = sorted(granted | set(access.get(scope.name, ())))
        # An artifact-scoped credential passes its narrowing on to its tokens.
        now = int(now_unix())
        payload = {
            "sub": grant.subject,
            "ten": grant.tenant_id,
            "acc": access,
            "art": grant.artifact,
            "iat": now,
            "exp": now + ttl_s,
        }
        token = self._sign(payload)
        log.info(
            "registry token for %s: %s",
            grant.subject,
            ", ".join(f"{r}:{','.join(a)}" for r, a in access.items()) or "no access",
        )
        return {
            "token": token,
            "access_token": token,
            "expires_in": ttl_s,
            "issued_at": rfc3339(now),
        }

    def _sign(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        return f"{_TOKEN_PREFIX}{body}.{signature}"

    def _verify_token(self, token: str) -> RegistryGrant:
        body, _, signature = token.removeprefix(_TOKEN_PREFIX).partition(".")
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        # The signature first: nothing of an unsigned payload is even decoded.
        if not hmac.compare_digest(_unpadded_b64decode(signature), expected):
            raise Unauthenticated("the registry token is not valid")
        payload = json.loads(_unpadded_b64decode(body))
        if payload["exp"] <= now_unix():
            raise Unauthenticated("the registry token has expired")
        return RegistryGrant(
            "token",
            payload["sub"],
            payload["ten"],
            access={repo: frozenset(acts) for repo, acts in payload["acc"].items()},
            artifact=payload["art"],
        )


def _load_or_create_key(key_file: Path) -> bytes:
    """The token signing key, made on first start and kept in a 0600 file."""
    try:
        text = key_file.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    key = secrets.token_bytes(32)
    write_secret_file(key_file, key.hex())
    log.info("created the registry token signing key in %s", key_file)
    return key


def _unpadded_b64decode(text: str) -> bytes:
    """base64url without its `=` padding, as tokens carry it; b"" if malformed."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""
