"""The OpenAPI document is valid and follows the naming and error conventions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}

# Served by the app but not described here: the OCI distribution API and the agent
# channel have their own specifications (OCI distribution spec, the .proto).
UNDOCUMENTED_PREFIXES = ("/registry", "/v2/", "/api/agents/connect")


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every route the control plane's app serves, in OpenAPI form."""
    from starlette.routing import Route, WebSocketRoute

    from control_plane_lite.server import ControlPlane, ControlPlaneConfig

    cp = ControlPlane(ControlPlaneConfig(state_dir=tmp_path))
    try:
        routes: set[tuple[str, str]] = set()
        for route in cp.app.routes:
            path = getattr(route, "path", "")
            if path.startswith(UNDOCUMENTED_PREFIXES):
                continue
            # The document names path parameters in camelCase: {sandbox_id} -> {sandboxId}.
            documented = re.sub(
                r"{(\w+)}", lambda m: "{" + _camel(m.group(1)) + "}", path
            )
            if isinstance(route, WebSocketRoute):
                routes.add(("get", documented))
            elif isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        routes.add((method.lower(), documented))
        return routes
    finally:
        cp.close()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


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


def test_document_describes_exactly_the_routes_the_app_serves(document, tmp_path):
    described = {(method, path) for method, path, _ in _operations(document)}
    served = served_routes(tmp_path)

    assert described - served == set(), "documented but not served"
    assert served - described == set(), "served but not documented"


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
