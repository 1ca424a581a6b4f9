"""The OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``; the tests walk every path)."""

from __future__ import annotations

from typing import Any

from bessgw import __version__

_ERROR = {"description": "An error",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ANY_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}


def _responses(ok: str, *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, **_ANY_JSON}}
    for code in codes:
        responses[str(code)] = _ERROR
    return responses


def _read(summary: str, *codes: int, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}, {}],
                                 "responses": _responses(summary, 401, 403, *codes)}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _write(summary: str, schema: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": [{"bearer": []}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "responses": _responses("Accepted (journaled); a repeated command_id returns the first result",
                                400, 401, 403, 404, 409, 413, 422, 503),
    }}


_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": 128}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "bessgw REST API", "version": __version__,
                 "description": "Reads and commands of one bessgw gateway. Writes go through the same command "
                                "path as OPC UA and the CLI: validated, journaled, idempotent by command_id."},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/status": _read("Gateway status: units, control, services"),
            "/units": _read("Every unit's latest snapshot"),
            "/units/{unit_id}": _read("One unit's latest snapshot", 404, parameters=[
                {"name": "unit_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
            "/campus": _read("The federation's campus view", 404),
            "/members": _read("The federation's membership table", 404),
            "/journal": _read("The command journal, newest first, paged by sequence number", 400, 503, parameters=[
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "before_seq", "in": "query", "schema": {"type": "integer", "minimum": 1}}]),
            "/setpoint": _write("Set a source's target for the gateway (or one unit's override)", "Setpoint"),
            "/release": _write("Withdraw a source's setpoint", "Release"),
            "/openapi.json": {"get": {"summary": "This document", "security": [{}],
                                      "responses": {"200": {"description": "OpenAPI document", **_ANY_JSON}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "<name>.<secret> from [[http.tokens]]"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Setpoint": {"type": "object", "additionalProperties": False, "required": ["p_kw"], "properties": {
                    "p_kw": {"type": "number", "description": "> 0 discharges"},
                    "q_kvar": {"type": "number"},
                    "expires_in_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                    "command_id": _IDENTIFIER, "unit_id": _IDENTIFIER,
                    "source": {**_IDENTIFIER, "default": "scada"}}},
                "Release": {"type": "object", "additionalProperties": False, "properties": {
                    "command_id": _IDENTIFIER, "unit_id": _IDENTIFIER, "source": {**_IDENTIFIER, "default": "scada"}}},
            },
        },
    }
