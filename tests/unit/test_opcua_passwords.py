"""Password hashes for OPC UA users, and the ``[northbound.opcua]`` config table that holds them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bessgw.config import Config, OpcUaSettings
from bessgw.northbound.passwords import hash_password, verify_password


def test_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first.startswith("scrypt$16384$8$1$") and first != second  # salted
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3cret ", first) and not verify_password("", first)


@pytest.mark.parametrize("stored", [
    "", "plain-text-password", "scrypt$16384$8$1$!!notbase64$AAAA", "scrypt$3$8$1$AAAA$AAAA",
    "scrypt$1099511627776$8$1$AAAA$AAAA", "md5$abc$def", "pbkdf2_sha256$0$AAAA$AAAA",
])
def test_malformed_or_hostile_hashes_never_match_and_never_raise(stored: str) -> None:
    assert verify_password("anything", stored) is False


def test_pbkdf2_hashes_from_elsewhere_are_accepted() -> None:
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 1000)
    stored = f"pbkdf2_sha256$1000${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("pw", stored) and not verify_password("pw2", stored)


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError):
        hash_password("")


def test_northbound_is_off_by_default_and_secure_by_default() -> None:
    settings = Config(gateway={"id": "gw1"}).northbound.opcua
    assert settings.enabled is False
    assert "None" not in settings.security_policies and settings.anonymous == "off"


def test_config_refuses_plain_passwords_and_duplicate_users() -> None:
    good = hash_password("pw")
    with pytest.raises(ValidationError, match="password_hash"):
        OpcUaSettings(users=[{"name": "otto", "password_hash": "hunter2", "role": "operator"}])
    with pytest.raises(ValidationError, match="unique"):
        OpcUaSettings(users=[{"name": "otto", "password_hash": good, "role": "operator"},
                             {"name": "otto", "password_hash": good, "role": "viewer"}])
    with pytest.raises(ValidationError, match="role"):
        OpcUaSettings(users=[{"name": "otto", "password_hash": good, "role": "root"}])
    with pytest.raises(ValidationError, match="certificate_path"):
        OpcUaSettings(certificate_path="/etc/bessgw/cert.der")
