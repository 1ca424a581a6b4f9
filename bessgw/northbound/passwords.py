"""Password hashing for OPC UA user logins.

Config files are read by more people than should know the passwords, so they hold only salted scrypt
hashes (``scrypt$N$r$p$salt$hash``, salt and hash base64), made by ``bessgw hash-password``. scrypt is
memory-hard, which makes offline guessing from a leaked config expensive; the stdlib has it, so there is
no extra dependency. ``pbkdf2_sha256$iterations$salt$hash`` is accepted too for hashes made elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

#: scrypt cost: 2**14 * 8 * 128 bytes = 16 MiB and ~50 ms per check, paid once per session activation
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
#: refuse absurd parameters from a config file instead of exhausting memory at login
_MAX_SCRYPT_N = 2**20
_MAX_PBKDF2_ITERATIONS = 10_000_000


def hash_password(plain: str) -> str:
    """Return a salted scrypt hash of ``plain`` for the ``password_hash`` key of a user."""
    if not plain:
        raise ValueError("an empty password cannot be hashed")
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(plain.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=_HASH_BYTES, maxmem=_scrypt_maxmem(SCRYPT_N, SCRYPT_R))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(plain: str, stored: str) -> bool:
    """Whether ``plain`` matches the ``stored`` hash; a malformed hash never matches (and never raises)."""
    try:
        scheme, *fields = stored.split("$")
        if scheme == "scrypt" and len(fields) == 5:
            n, r, p = (int(value) for value in fields[:3])
            if not (1 < n <= _MAX_SCRYPT_N and 0 < r <= 64 and 0 < p <= 16):
                return False
            salt, expected = _unb64(fields[3]), _unb64(fields[4])
            digest = hashlib.scrypt(plain.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                                    maxmem=_scrypt_maxmem(n, r))
        elif scheme == "pbkdf2_sha256" and len(fields) == 3:
            iterations = int(fields[0])
            if not 0 < iterations <= _MAX_PBKDF2_ITERATIONS:
                return False
            salt, expected = _unb64(fields[1]), _unb64(fields[2])
            digest = hashlib.pbkdf2_hmac("sha256", plain.encode("utf-8"), salt, iterations, len(expected))
        else:
            return False
    except (ValueError, OverflowError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt_maxmem(n: int, r: int) -> int:
    return 128 * n * r * 2


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
