"""``[http]`` (metrics, health, REST API) and ``[tracing]`` (OpenTelemetry): how a gateway is observed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from bessgw.config.base import HOST_PORT, StrictModel

#: a token name: the part before the first "." of a bearer token (``<name>.<secret>``)
TOKEN_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class ApiToken(StrictModel):
    """``[[http.tokens]]``: one bearer token of the REST API and its role (stored hashed, never in clear)."""

    name: str = Field(pattern=TOKEN_NAME,
                      description="Token name; clients send `Authorization: Bearer <name>.<secret>`")
    token_hash: str = Field(
        pattern=r"^(scrypt\$\d+\$\d+\$\d+|pbkdf2_sha256\$\d+)\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$",
        description="Hash of the secret from `bessgw hash-password` (never the secret itself)",
    )
    role: Literal["viewer", "operator", "admin"] = Field(
        description="viewer reads; operator also writes setpoints and releases; admin as operator"
    )


class HttpTls(StrictModel):
    """``[http.tls]``: serve HTTPS with this certificate chain and key (PEM)."""

    cert_file: Path = Field(description="PEM certificate (chain); relative to the config file's directory")
    key_file: Path = Field(description="PEM private key; relative to the config file's directory")


class HttpSection(StrictModel):
    """``[http]``: one listener for ``/metrics``, ``/healthz``, ``/readyz`` and the REST API ``/api/v1``."""

    listen: str = Field(description="host:port to listen on, e.g. 127.0.0.1:9108 (port 0: any free port)")
    tls: HttpTls | None = Field(None, description="HTTPS instead of plain HTTP")
    anonymous_read: bool = Field(
        False, description="Allow REST reads without a token (metrics and health never need one)")
    tokens: list[ApiToken] = Field(default_factory=list, description="Bearer tokens of the REST API")
    max_body_bytes: int = Field(16_384, ge=256, le=1_048_576, description="Larger request bodies get 413")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        match = HOST_PORT.match(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(f"expected host:port with a port in 0..65535 (got {value!r})")
        return value

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        names = [token.name for token in tokens]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"token names must be unique (repeated: {', '.join(duplicates)})")
        return tokens

    @property
    def host(self) -> str:
        match = HOST_PORT.match(self.listen)
        assert match is not None
        return match["host"].strip("[]")

    @property
    def port(self) -> int:
        match = HOST_PORT.match(self.listen)
        assert match is not None
        return int(match["port"])


class TracingSection(StrictModel):
    """``[tracing]``: OpenTelemetry traces of the command path, exported with OTLP over HTTP.

    The standard variables apply: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (used when ``endpoint`` is not set)
    and ``OTEL_SERVICE_NAME`` (over ``service_name``). Off: no exporter, no thread, no-op spans.
    """

    enabled: bool = False
    endpoint: str | None = Field(
        None, pattern=r"^https?://[^\s]+$",
        description="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (default: OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    service_name: str = Field("bessgw", min_length=1, max_length=128)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0, description="Share of new traces recorded")
    protocol: Literal["http/protobuf"] = "http/protobuf"
