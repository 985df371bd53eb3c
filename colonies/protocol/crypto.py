"""secp256k1 keys, identities and recoverable signatures, as the original Colonies defines them.

* id       = hex(SHA3-256(ascii(hex(uncompressed public key))))
* hash     = SHA3-256(ascii(base64 payload text))
* signature = r(32) || s(32) || v(1), low-S, v in {0, 1}; 130 hex chars
"""

from __future__ import annotations

import functools
import hashlib
import secrets

import coincurve

from colonies.errors import Forbidden

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2


def sha3_hex(data: bytes) -> str:
    return hashlib.sha3_256(data).hexdigest()


def _sha3(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def generate_prvkey() -> str:
    """A new random private key as 64 lowercase hex chars."""
    while True:
        d = int.from_bytes(secrets.token_bytes(32), "big")
        if 0 < d < _N:
            return d.to_bytes(32, "big").hex()


@functools.lru_cache(maxsize=64)
def _prvkey(prvkey: str) -> coincurve.PrivateKey:
    """A parsed key (cached: a client signs every request with the same few keys)."""
    try:
        raw = bytes.fromhex(prvkey)
    except ValueError as exc:
        raise ValueError("private key must be hex") from exc
    if len(raw) != 32 or not 0 < int.from_bytes(raw, "big") < _N:
        raise ValueError("private key must be 32 bytes in (0, n)")
    return coincurve.PrivateKey(raw)


def id_of_pubkey(pubkey_uncompressed: bytes) -> str:
    return sha3_hex(pubkey_uncompressed.hex().encode("ascii"))


def id_of(prvkey: str) -> str:
    """The identity (server, colony, executor or user id) that a private key signs as."""
    return id_of_pubkey(_prvkey(prvkey).public_key.format(compressed=False))


def sign(payload: str, prvkey: str) -> str:
    """Sign the exact payload text; returns 130 hex chars (r || s || v)."""
    sig = _prvkey(prvkey).sign_recoverable(_sha3(payload.encode("ascii")), hasher=None)
    return sig.hex()


def recover_id(payload: str, signature: str) -> str:
    """The id that signed `payload`, or Forbidden when the signature is malformed or does not recover."""
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        raise Forbidden("signature is not hex") from None
    if len(sig) != 65:
        raise Forbidden("signature must be 65 bytes")
    if sig[64] > 1:
        raise Forbidden("invalid signature recovery id")
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < _N and 0 < s <= _HALF_N):
        raise Forbidden("invalid signature: s must be low and r, s in range")
    try:
        digest = _sha3(payload.encode("ascii"))
    except UnicodeEncodeError:
        raise Forbidden("payload is not ascii") from None
    try:
        pub = coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
    except Exception:  # noqa: BLE001 - libsecp256k1 raises plain exceptions for unrecoverable input
        raise Forbidden("signature does not recover a public key") from None
    return id_of_pubkey(pub.format(compressed=False))
