"""A tiny blocking HTTP client for tests that drive a gateway subprocess (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http(method: str, url: str, body: bytes | None = None, token: str | None = None,
         headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """``(status, body)`` of one request; HTTP errors are answers too, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None and "Content-Type" not in request.headers:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    status, body = http("GET", url, token=token)
    return status, json.loads(body)
