"""The gateway's own OPC UA *client* certificate, generated into the state directory on first use.

Kept apart from the northbound server certificate (``pki/own``): a device admin trusts the gateway's
client certificate, and rotating one must not touch the other.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from bessgw.config import Config
from bessgw.errors import DeviceError


@dataclass(frozen=True)
class ClientIdentity:
    """The application URI the certificate carries, and where certificate (DER) and key (PEM) are."""

    application_uri: str
    certificate: Path
    private_key: Path


def application_uri(config: Config) -> str:
    return f"urn:bessgw:{config.gateway.id}:southbound"


async def client_identity(config: Config) -> ClientIdentity:
    """The configured certificate, or one generated into ``state_dir/pki/southbound`` if none is set."""
    settings = config.southbound.opcua
    uri = application_uri(config)
    if settings.certificate_path is not None and settings.private_key_path is not None:
        return ClientIdentity(uri, settings.certificate_path, settings.private_key_path)
    own = config.gateway.state_dir / "pki" / "southbound"
    identity = ClientIdentity(uri, own / "client_cert.der", own / "client_key.pem")
    try:
        own.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            identity.private_key, identity.certificate, uri, socket.gethostname(),
            [ExtendedKeyUsageOID.CLIENT_AUTH], {"organizationName": "bessgw"},
        )
    except OSError as err:
        raise DeviceError(f"cannot write the OPC UA client certificate to {own}: {err}") from err
    return identity
