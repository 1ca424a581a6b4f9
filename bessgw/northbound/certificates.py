"""Application certificates and the trust list, laid out like other OPC UA servers.

``<pki>/own/`` holds the server's certificate and key (generated on first start unless configured),
``<pki>/trusted/`` the client certificates an admin trusts, and ``<pki>/rejected/`` every client
certificate that was refused — an admin trusts a client by moving its file from rejected/ to trusted/,
without restarting the gateway (the trusted directory is re-read when it changes).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import dump_private_key_as_pem, generate_private_key
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bessgw.errors import BessgwError

#: a gateway certificate outlives a one-year default: an expired server cert stops every SCADA link
SERVER_CERT_DAYS = 5 * 365


class CertificateError(BessgwError):
    """A configured certificate or key cannot be read, or the PKI directory is not writable."""


@dataclass(frozen=True)
class CertificateFiles:
    """Where a certificate (DER) and its private key (PEM) live."""

    certificate: Path
    private_key: Path


def ensure_certificate(
    files: CertificateFiles,
    application_uri: str,
    common_name: str,
    *,
    client: bool = False,
    hostnames: tuple[str, ...] = (),
    days: int = SERVER_CERT_DAYS,
) -> CertificateFiles:
    """Create a self-signed application certificate and key at ``files`` unless both already exist.

    The certificate carries ``application_uri`` in its subjectAltName (OPC UA checks it against the
    application description), the host names / IPs given, and the key usages OPC UA requires. Used for
    the server on first start, and by tests and tools to make client certificates the same way.
    """
    if files.certificate.is_file() and files.private_key.is_file():
        return files
    try:
        files.certificate.parent.mkdir(parents=True, exist_ok=True)
        files.private_key.parent.mkdir(parents=True, exist_ok=True)
        key = generate_private_key()
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
        for host in hostnames or (socket.gethostname(), "localhost", "127.0.0.1"):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bessgw")])
        now = dt.datetime.now(dt.timezone.utc)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=False)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                              data_encipherment=True, key_agreement=False, key_cert_sign=True,
                              crl_sign=False, encipher_only=False, decipher_only=False),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(files.private_key, dump_private_key_as_pem(key))
        files.certificate.write_bytes(certificate.public_bytes(Encoding.DER))
    except OSError as err:
        raise CertificateError(f"cannot write certificate to {files.certificate.parent}: {err}") from err
    return files


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def thumbprint(certificate: x509.Certificate) -> str:
    """SHA-1 thumbprint in hex, the name OPC UA tools show for a certificate."""
    return certificate.fingerprint(hashes.SHA1()).hex()


#: files in trusted/ that count as certificates
_CERT_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})


class TrustList:
    """Validates client certificates against ``trusted/`` and files refused ones into ``rejected/``.

    Callable as asyncua's certificate validator (called when a client creates a session).
    """

    def __init__(self, pki_dir: Path, on_rejected: Callable[[str, str], None] | None = None) -> None:
        self.trusted_dir = pki_dir / "trusted"
        self.rejected_dir = pki_dir / "rejected"
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        self._on_rejected = on_rejected
        self._store = TrustStore([self.trusted_dir], [])
        self._validator = CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT,
            self._store,
        )
        self._loaded_stamp: tuple[float, int] | None = None
        self.rejected = 0

    async def __call__(self, certificate: x509.Certificate, app_description: ua.ApplicationDescription) -> None:
        if not await self._reload_if_changed():
            # nothing trusted yet (a fresh install): refuse and file the certificate so that an admin can
            # trust it; asyncua's store cannot even be loaded empty
            self._reject(certificate, "BadCertificateUntrusted")
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        try:
            await self._validator.validate(certificate, app_description)
        except ServiceError as err:
            self._reject(certificate, ua.StatusCode(err.code).name)
            raise

    async def _reload_if_changed(self) -> bool:
        """Reload ``trusted/`` when it changed; whether it holds any certificate at all."""
        entries = [entry for entry in self.trusted_dir.iterdir() if entry.suffix.lower() in _CERT_SUFFIXES]
        if not entries:
            self._loaded_stamp = None
            return False
        stamp = (self.trusted_dir.stat().st_mtime, len(entries))
        if stamp != self._loaded_stamp:
            await self._store.load()
            self._loaded_stamp = stamp
        return True

    def _reject(self, certificate: x509.Certificate, reason: str) -> None:
        self.rejected += 1
        name = _file_name(certificate)
        path = self.rejected_dir / name
        try:
            if not path.exists():
                path.write_bytes(certificate.public_bytes(Encoding.DER))
        except OSError:
            pass  # rejecting must not fail because the disk is full; the reason is still logged
        if self._on_rejected is not None:
            self._on_rejected(name, reason)


def _file_name(certificate: x509.Certificate) -> str:
    """``<common name> [<thumbprint>].der`` as UaExpert and open62541 name trust-list files."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common = str(names[0].value) if names else "unnamed"
    safe = "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in common)[:64]
    return f"{safe} [{thumbprint(certificate)}].der"
