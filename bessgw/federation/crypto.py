"""Campus key ring and datagram sealing (ChaCha20-Poly1305).

Every datagram is encrypted and authenticated: without the campus key nobody can read gossip or inject
state. A key ring makes rotation possible without a flag day: send with the primary key, accept any key
of the ring; roll out the new key as secondary everywhere, then make it primary, then drop the old one.

Layout (all bytes)::

    format (0xB2) | key id (4) | nonce (12) | ciphertext + tag (16)

The key id (first 4 bytes of SHA-256 of the key) picks the key without trial decryption; the header is
authenticated as associated data. Nonces are random: at gossip rates (thousands per second at most) the
2^-32 birthday bound of a 96-bit random nonce is reached after ~2^32 datagrams per key, far beyond a
key's planned life. Replay protection is not here but in :mod:`bessgw.federation.replay`, on the
authenticated plaintext header.

The format byte names the plaintext layout, the *wire version*: ``0xB0 + version``. 0xB1 was wire format
1 (no longer understood: dropped as ``format`` before decryption, as anything not starting with 0xB2..0xBF),
0xB2 is version 2 (release 0.2.0), 0xB3 version 3, and so on (:mod:`bessgw.federation.wire` decides which
versions it reads). The sealing layout itself is the same for every version, so a gateway can always open
a datagram of a later version and read who sent it; it is authenticated as associated data, so nobody
can relabel a datagram's version.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bessgw.federation.errors import DatagramError

#: first byte of a datagram of wire version 2; version ``v`` is ``FORMAT_BASE + v``
FORMAT = 0xB2
FORMAT_BASE = 0xB0
#: versions a format byte may name (1 was a layout without a preamble, long gone: refused as ``format``;
#: a random datagram is refused here 242 times in 256)
MIN_FORMAT_VERSION = 2
MAX_FORMAT_VERSION = 15
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
#: bytes a sealed datagram adds to its plaintext
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES


def key_id(key: bytes) -> bytes:
    """4-byte public fingerprint of a key (safe to log, identifies which key a datagram used)."""
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


class KeyRing:
    """Campus keys, primary first. Seals with the primary, opens with whichever key the datagram names."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._ciphers: dict[bytes, ChaCha20Poly1305] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"campus keys are {KEY_BYTES} bytes (got {len(key)})")
            self._ciphers.setdefault(key_id(key), ChaCha20Poly1305(bytes(key)))
        self._primary_id = key_id(keys[0])
        self._primary = self._ciphers[self._primary_id]

    @property
    def primary_id(self) -> bytes:
        return self._primary_id

    def seal(self, plaintext: bytes, version: int = MIN_FORMAT_VERSION) -> bytes:
        """Encrypt and authenticate ``plaintext`` (of wire ``version``) with the primary key."""
        if not MIN_FORMAT_VERSION <= version <= MAX_FORMAT_VERSION:
            raise ValueError(f"wire version {version} has no format byte")
        header = bytes([FORMAT_BASE + version]) + self._primary_id
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._primary.encrypt(nonce, plaintext, header)

    def open(self, datagram: bytes) -> bytes:
        """The plaintext of ``datagram``, or :class:`DatagramError` saying why not."""
        if len(datagram) < OVERHEAD_BYTES:
            raise DatagramError("short", f"{len(datagram)} bytes")
        if version_of(datagram) is None:
            raise DatagramError("format", f"first byte {datagram[0]:#04x}")
        header = datagram[: 1 + KEY_ID_BYTES]
        cipher = self._ciphers.get(header[1:])
        if cipher is None:
            raise DatagramError("unknown_key", f"key id {header[1:].hex()}")
        nonce = datagram[len(header):HEADER_BYTES]
        try:
            return cipher.decrypt(nonce, datagram[HEADER_BYTES:], header)
        except InvalidTag:
            raise DatagramError("auth", f"key id {header[1:].hex()}") from None


def version_of(datagram: bytes) -> int | None:
    """The wire version a sealed datagram's format byte names (None: not a format we can open)."""
    if not datagram:
        return None
    version = datagram[0] - FORMAT_BASE
    return version if MIN_FORMAT_VERSION <= version <= MAX_FORMAT_VERSION else None
