"""The trust list on a fresh install: nothing trusted yet, the first client is refused and filed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.common.utils import ServiceError
from cryptography import x509

from bessgw.northbound.certificates import CertificateFiles, TrustList, ensure_certificate

pytestmark = pytest.mark.integration


def client_cert(directory: Path) -> x509.Certificate:
    files = ensure_certificate(CertificateFiles(directory / "c.der", directory / "c.pem"), "urn:test:c", "test c",
                               client=True, hostnames=("localhost",))
    return x509.load_der_x509_certificate(files.certificate.read_bytes())


def test_empty_trust_list_refuses_and_files_the_certificate(tmp_path: Path) -> None:
    rejected: list[tuple[str, str]] = []
    trust = TrustList(tmp_path / "pki", on_rejected=lambda name, reason: rejected.append((name, reason)))
    certificate = client_cert(tmp_path)

    with pytest.raises(ServiceError) as info:
        asyncio.run(trust(certificate, ua.ApplicationDescription(ApplicationUri="urn:test:c")))
    assert info.value.code == ua.StatusCodes.BadCertificateUntrusted
    (filed,) = list((tmp_path / "pki" / "rejected").iterdir())
    assert rejected == [(filed.name, "BadCertificateUntrusted")]
    # moving it to trusted/ is covered with real clients in test_opcua_server.py and tests/interop
