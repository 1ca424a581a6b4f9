"""The OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``; the tests walk every path)."""

from __future__ import annotations

from typing import Any

from bessgw import __version__

_ERROR = {"description": "An error",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _ref(schema: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{schema}"}


def _responses(ok: str, schema: dict[str, Any], *codes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, "content": {"application/json": {"schema": schema}}}}
    for code in codes:
        responses[str(code)] = _ERROR
    return responses


def _read(summary: str, schema: dict[str, Any], *codes: int,
          parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}, {}],
                                 "responses": _responses(summary, schema, 401, 403, 429, *codes)}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _write(summary: str, schema: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(schema)}}},
        "responses": _responses("Accepted (journaled); a repeated command_id returns the first result",
                                {"type": "object", "required": ["result"], "properties": {"result": _ref("Command")}},
                                400, 401, 403, 404, 409, 413, 422, 429, 503),
    }}


_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": 128}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
#: the fields of a journaled command (a journal entry; a command's result has the same but traceparent)
_COMMAND_FIELDS: dict[str, Any] = {
    "seq": {"type": "integer"}, "command_id": {"type": "string"},
    "kind": {"type": "string", "description": "setpoint, release, dropped (by the fail-safe) or campus_setpoint"},
    "source": {"type": "string"}, "principal": {"type": "string"},
    "received_at": {"type": "number", "description": "epoch seconds"},
    "requested_p_kw": _NUMBER_OR_NULL, "requested_q_kvar": _NUMBER_OR_NULL,
    "applied_p_kw": _NUMBER_OR_NULL, "applied_q_kvar": _NUMBER_OR_NULL,
    "expires_at": {**_NUMBER_OR_NULL, "description": "epoch seconds; null: until replaced or released"},
    "note": {"type": "string"}, "unit_id": {"type": "string", "description": "empty: the whole gateway"},
}
_SCHEMAS: dict[str, Any] = {
    "Unit": {"type": "object", "required": ["id", "connected", "commandable", "quality", "state", "age_s"],
             "properties": {
                 "id": {"type": "string"}, "connected": {"type": "boolean"}, "commandable": {"type": "boolean"},
                 "quality": {"type": "string", "enum": ["good", "stale", "bad"]}, "state": {"type": "string"},
                 "reason": {"type": ["string", "null"]}, "age_s": {"type": "number", "minimum": 0},
                 "soc_pct": _NUMBER_OR_NULL, "p_kw": _NUMBER_OR_NULL, "q_kvar": _NUMBER_OR_NULL,
                 "limits": {"type": ["object", "null"], "properties": {
                     "max_charge_kw": {"type": "number"}, "max_discharge_kw": {"type": "number"},
                     "max_q_kvar": {"type": "number"}}}}},
    "Command": {"type": "object", "required": list(_COMMAND_FIELDS), "properties": _COMMAND_FIELDS},
    "JournalEntry": {"type": "object", "required": list(_COMMAND_FIELDS),
                     "properties": {**_COMMAND_FIELDS, "traceparent": {"type": "string"}}},
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "bessgw REST API", "version": __version__,
                 "description": "Reads and commands of one bessgw gateway. Writes go through the same command "
                                "path as OPC UA and the CLI: validated, journaled, idempotent by command_id."},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/status": _read("Gateway status: units, control, services (as bessgw status --json)", _ANY_OBJECT),
            "/units": _read("Every unit's latest snapshot", {
                "type": "object", "required": ["units"],
                "properties": {"units": {"type": "array", "items": _ref("Unit")}}}),
            "/units/{unit_id}": _read("One unit's latest snapshot", _ref("Unit"), 404, parameters=[
                {"name": "unit_id", "in": "path", "required": True, "schema": {"type": "string"}}]),
            "/campus": _read("The federation's campus view", {
                "type": "object", "required": ["view"], "properties": {"view": _ANY_OBJECT}}, 404),
            "/members": _read("The federation's membership table", {
                "type": "object", "required": ["members"], "properties": {"members": {}}}, 404),
            "/journal": _read("The command journal, newest first, paged by sequence number", {
                "type": "object", "required": ["entries", "next_before_seq"], "properties": {
                    "entries": {"type": "array", "items": _ref("JournalEntry")},
                    "next_before_seq": {"type": ["integer", "null"],
                                        "description": "before_seq of the next page; null: this was the last"}}},
                400, 503, parameters=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "before_seq", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}]),
            "/setpoint": _write("Set a source's target for the gateway (or one unit's override)", "Setpoint"),
            "/release": _write("Withdraw a source's setpoint", "Release"),
            "/openapi.json": {"get": {"summary": "This document", "security": [{}],
                                      "responses": _responses("OpenAPI document", _ANY_OBJECT)}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "<name>.<secret> from [[http.tokens]]"}},
            "schemas": {
                **_SCHEMAS,
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
