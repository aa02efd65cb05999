"""The running control plane against its OpenAPI document, driven by schemathesis.

Schemathesis generates requests for every operation from `openapi/openapi.yaml`
(valid and deliberately invalid ones) and checks each response against the document:
no server error, a documented status code, the declared content type and a body
matching the response schema. The WebSocket stream is not an HTTP operation and is
left out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from .conftest import Lab

REPO = Path(__file__).resolve().parents[3]
schema = schemathesis.openapi.from_path(REPO / "openapi" / "openapi.yaml").exclude(
    path_regex=r"/stream$"
)

pytestmark = pytest.mark.root


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, lab: Lab):
    case.call_and_validate(
        base_url=lab.url, headers={"Authorization": f"Bearer {lab.key}"}
    )
