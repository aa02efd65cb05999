"""The OpenAPI document is valid and follows the naming and error conventions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# The routes of the lite control plane's HTTP contract, no more and no fewer.
CONTRACT_ROUTES = {
    ("get", "/api/auth/session"),
    ("get", "/api/hosts"),
    ("get", "/api/hosts/{hostId}"),
    ("get", "/api/sandboxes"),
    ("post", "/api/sandboxes"),
    ("get", "/api/sandboxes/{sandboxId}"),
    ("delete", "/api/sandboxes/{sandboxId}"),
    ("get", "/api/sandboxes/{sandboxId}/wait"),
    ("get", "/api/sandboxes/{sandboxId}/terminal-sessions"),
    ("post", "/api/sandboxes/{sandboxId}/terminal-sessions"),
    ("get", "/api/sandboxes/{sandboxId}/terminal-sessions/{sessionId}"),
    ("delete", "/api/sandboxes/{sandboxId}/terminal-sessions/{sessionId}"),
    ("get", "/api/sandboxes/{sandboxId}/terminal-sessions/{sessionId}/stream"),
    ("get", "/api/blueprints"),
    ("post", "/api/blueprints"),
    ("get", "/api/blueprints/{blueprintId}"),
    ("delete", "/api/blueprints/{blueprintId}"),
    ("post", "/api/blueprints/{blueprintId}/activate"),
    ("post", "/api/blueprints/{blueprintId}/deactivate"),
    ("get", "/api/volumes"),
    ("post", "/api/volumes"),
    ("get", "/api/volumes/{volumeId}"),
    ("delete", "/api/volumes/{volumeId}"),
    ("get", "/api/volumes/{volumeId}/attachments"),
    ("post", "/api/volumes/{volumeId}/attachments"),
    ("get", "/api/volumes/{volumeId}/attachments/{attachmentId}"),
    ("delete", "/api/volumes/{volumeId}/attachments/{attachmentId}"),
    ("get", "/api/registry"),
    ("post", "/api/registry/credentials"),
    ("get", "/api/registry/token"),
    ("get", "/api/registry/repositories"),
    ("get", "/api/registry/artifacts"),
    ("post", "/api/registry/gc"),
    ("delete", "/api/hosts/{hostId}"),
    ("get", "/api/hosts/{hostId}/logs"),
    ("post", "/api/hosts/enroll"),
    ("get", "/api/clusters"),
    ("post", "/api/clusters"),
    ("get", "/api/clusters/{clusterId}"),
    ("delete", "/api/clusters/{clusterId}"),
    ("get", "/api/provisioning-tokens"),
    ("post", "/api/provisioning-tokens"),
    ("get", "/api/provisioning-tokens/{tokenId}"),
    ("delete", "/api/provisioning-tokens/{tokenId}"),
    ("get", "/api/api-keys"),
    ("post", "/api/api-keys"),
    ("delete", "/api/api-keys/{keyId}"),
    ("get", "/api/networks"),
    ("post", "/api/networks"),
    ("get", "/api/networks/{networkId}"),
    ("delete", "/api/networks/{networkId}"),
    ("get", "/api/networks/{networkId}/members"),
    ("get", "/api/networks/{networkId}/routes"),
    ("get", "/api/networks/{networkId}/policies"),
    ("put", "/api/networks/{networkId}/policies"),
    ("post", "/api/networks/{networkId}/mesh-join"),
    ("post", "/api/networks/{networkId}/diagnostics"),
    ("post", "/api/sandboxes/{sandboxId}/networks/{networkId}/attach"),
    ("post", "/api/sandboxes/{sandboxId}/networks/{networkId}/detach"),
}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text())


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _resolve(document: dict, node: dict) -> dict:
    """Follow local `$ref`s (`#/components/...`) to the node they name."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = document
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_document_describes_exactly_the_contract_routes(document):
    described = {(method, path) for method, path, _ in _operations(document)}

    assert described == CONTRACT_ROUTES


def test_every_path_is_under_api_with_plural_collection_names(document):
    for path in document["paths"]:
        segments = path.split("/")[1:]
        assert segments[0] == "api", path

        # A segment followed by a record id names a collection: plural.
        for name, following in zip(segments, segments[1:], strict=False):
            if following.startswith("{"):
                assert name.endswith("s"), f"{path}: collection {name!r} is singular"


def test_every_operation_has_a_unique_operation_id(document):
    ids = [operation.get("operationId") for _, _, operation in _operations(document)]

    assert None not in ids
    assert len(ids) == len(set(ids))


# Enrollment comes before the host has any credential: the provisioning token in the
# request body is what it presents instead of an API key.
TOKEN_AUTHENTICATED_OPERATIONS = {("post", "/api/hosts/enroll")}


def test_bearer_security_applies_to_every_operation(document):
    scheme = document["components"]["securitySchemes"]["bearerAuth"]

    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert document["security"] == [{"bearerAuth": []}]
    for method, path, operation in _operations(document):
        if (method, path) in TOKEN_AUTHENTICATED_OPERATIONS:
            assert operation["security"] == [], f"{method} {path}"
        else:
            assert "security" not in operation, f"{method} {path} overrides security"
        assert "401" in operation["responses"], f"{method} {path} lacks 401"


def test_every_error_response_carries_the_error_schema(document):
    error_ref = "#/components/schemas/Error"
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            response = _resolve(document, response)
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": error_ref}, f"{method} {path} {status}"


def test_operations_on_a_record_document_not_found(document):
    for method, path, operation in _operations(document):
        if "{" in path:
            assert "404" in operation["responses"], f"{method} {path} lacks 404"


def test_request_bodies_are_closed_and_name_required_fields(document):
    for method, path, operation in _operations(document):
        if "requestBody" not in operation:
            continue
        content = operation["requestBody"]["content"]["application/json"]
        schema = _resolve(document, content["schema"])

        assert schema["additionalProperties"] is False, f"{method} {path}"
        assert "400" in operation["responses"], f"{method} {path} lacks 400"

        required = set(schema.get("required", []))
        for alternative in schema.get("oneOf", []):
            required |= set(alternative["required"])
        assert required <= set(schema["properties"]), f"{method} {path}"


@pytest.mark.parametrize(
    ("schema_name", "required"),
    [
        ("BlueprintCreate", ["name", "image"]),
        ("RegistryCredentialCreate", ["repository"]),
    ],
)
def test_request_bodies_require_the_contract_fields(document, schema_name, required):
    schema = document["components"]["schemas"][schema_name]

    assert schema["required"] == required


def test_path_parameters_are_typed_strings(document):
    for path, item in document["paths"].items():
        names = {
            _resolve(document, parameter)["name"]
            for parameter in item.get("parameters", [])
            if _resolve(document, parameter)["in"] == "path"
        }
        expected = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert names == expected, path
        for parameter in item.get("parameters", []):
            parameter = _resolve(document, parameter)
            assert parameter["schema"]["type"] == "string", path


def test_sandbox_create_refuses_both_image_and_blueprint(document):
    schema = document["components"]["schemas"]["SandboxCreate"]

    assert schema["oneOf"] == [{"required": ["image"]}, {"required": ["blueprint"]}]
