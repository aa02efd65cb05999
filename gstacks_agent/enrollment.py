"""Enrollment: trade a provisioning token for this host's identity.

`enroll` posts the token to the control plane's `POST /api/hosts/enroll`, which
checks it (expiry, uses left, revocation, cluster), records a host, and answers
with the host id and a host credential shown only this once. The caller writes them
with `identity.save_identity` (mode 0600); `gstacks-agent run` then connects with
that credential. The token itself is never stored.
"""

from __future__ import annotations

import logging

import httpx

from gstacks_agent.errors import FailedPrecondition, Unavailable
from gstacks_agent.identity import HostIdentity

log = logging.getLogger("gstacks.agent.enrollment")

ENROLL_TIMEOUT_S = 30.0


class EnrollmentRefused(FailedPrecondition):
    """The control plane refused the token (unknown, expired, used up, revoked...)."""


class ControlPlaneUnreachable(Unavailable):
    """No answer from the control plane at the given URL."""


def enroll(
    control_plane_url: str,
    token: str,
    *,
    name: str = "",
    hostname: str = "",
    cluster_id: str | None = None,
    timeout_s: float = ENROLL_TIMEOUT_S,
) -> HostIdentity:
    """Enroll this host; returns the identity to save. Raises on any refusal."""
    if not control_plane_url.startswith(("http://", "https://")):
        raise ValueError(
            "control_plane_url must start with http:// or https://, "
            f"not {control_plane_url!r}"
        )
    base = control_plane_url.rstrip("/")
    body: dict[str, str] = {"token": token, "name": name, "hostname": hostname}
    if cluster_id:
        body["cluster_id"] = cluster_id

    try:
        response = httpx.post(f"{base}/api/hosts/enroll", json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ControlPlaneUnreachable(
            f"cannot reach the control plane at {base}: {exc}"
        ) from exc

    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 201 or not isinstance(answer, dict):
        raise EnrollmentRefused(
            f"the control plane at {base} refused to enroll this host: "
            f"{_error_message(answer, response.status_code)}"
        )
    try:
        identity = HostIdentity(answer["host_id"], base, answer["credential"])
    except KeyError as exc:
        raise EnrollmentRefused(
            f"the control plane at {base} answered without {exc.args[0]}"
        ) from exc
    log.info(
        "host %s: enrolled with %s into cluster %s",
        identity.host_id,
        base,
        answer.get("cluster_id"),
    )
    return identity


def _error_message(answer: object, status: int) -> str:
    try:
        return str(answer["error"]["message"])
    except (TypeError, KeyError):
        return f"HTTP {status}"
