"""The hand-written OpenAPI document matches the routes the service serves, scopes included."""

from __future__ import annotations

from typing import Any, cast
from unittest import mock

from bulkkm.service._api import Api
from bulkkm.service._openapi import openapi_document
from bulkkm.service._tokens import Scope


def _routes() -> dict[tuple[str, str], list[str]]:
    """(path, method) -> every scope that may call it, from the service's own route table."""
    api = Api(mock.Mock(), mock.Mock())
    return {
        (route.path, route.method.lower()): sorted(
            s.value for s in Scope if any(s.allows(needed) for needed in route.scopes)
        )
        for route in api.routes
    }


def test_every_route_is_documented_with_its_scopes_and_nothing_else() -> None:
    """Each route has an operation with the scopes that reach it; no operation without a route."""
    document = openapi_document("0")
    paths = cast(dict[str, dict[str, Any]], document["paths"])
    documented = {
        (path, method): sorted(operation.get("x-scopes", []))
        for path, operations in paths.items()
        for method, operation in operations.items()
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert documented == _routes()


def test_operations_document_their_answers_and_references_resolve() -> None:
    """Every operation has responses (401/403 where a token is needed); every $ref resolves."""
    document = openapi_document("0")
    assert document["openapi"] == "3.1.0"
    schemas = cast(dict[str, Any], document["components"])["schemas"]
    for path, operations in cast(dict[str, dict[str, Any]], document["paths"]).items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (path, method)
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), (path, method)
            if "{id}" in path:
                assert any(p["name"] == "id" for p in operation["parameters"]), (path, method)

    def refs(value: object) -> list[str]:
        if isinstance(value, dict):
            found = [value["$ref"]] if "$ref" in value else []
            return found + [r for v in value.values() for r in refs(v)]
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
