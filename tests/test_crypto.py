"""Keys, ids and signatures on the original's vectors (§1.4), and every malformed-signature refusal."""

from __future__ import annotations

import pytest

from colonies.errors import Forbidden
from colonies.protocol import crypto

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

KEY_VECTORS = [
    ("fcc79953d8a751bf41db661592dc34d30004b1a651ffa0725b03ac227641499d",
     "039231c7644e04b6895471dd5335cf332681c54e27f81fac54f9067b3f2c0103"),
    ("ba949fa134981372d6da62b6a56f336ab4d843b22c02a4257dcf7d0d73097514",
     "4787a5071856a4acf702b2ffcea422e3237a679c681314113d86139461290cf4"),
    ("ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05",
     "3fc05cf3df4b494e95d6a3d297a34f19938f7daa7422ab0d4f794454133341ac"),
]
PAYLOAD = "eyJtc2d0eXBlIjoiZ2V0Y29sb25pZXNtc2cifQ=="
SIGNATURE = ("3cf5209e35d24048f67652cb354ded5bed0d56bdce9cab433646942a47760353"
             "283e65a2cb764e22d9efa37e67a9ba485ade029f1405e5eed13365a82250a873"
             "00")


def test_sha3_is_fips202() -> None:
    assert crypto.sha3_hex(b"hello world") == "644bcc7e564373040999aac89e7622f3ca71fba1d972fd94a31c3bfbf24e3938"


@pytest.mark.parametrize(("prvkey", "expected"), KEY_VECTORS)
def test_id_of_matches_original(prvkey: str, expected: str) -> None:
    assert crypto.id_of(prvkey) == expected


def test_signature_vector() -> None:
    assert crypto.sign(PAYLOAD, KEY_VECTORS[0][0]) == SIGNATURE
    assert crypto.recover_id(PAYLOAD, SIGNATURE) == KEY_VECTORS[0][1]


def test_sign_recover_roundtrip() -> None:
    for _ in range(20):
        key = crypto.generate_prvkey()
        payload = crypto.sha3_hex(key.encode())
        sig = crypto.sign(payload, key)
        assert len(sig) == 130
        assert int(sig[64:128], 16) <= N // 2
        assert crypto.recover_id(payload, sig) == crypto.id_of(key)


def test_other_payload_recovers_other_id() -> None:
    assert crypto.recover_id(PAYLOAD + "x", SIGNATURE) != KEY_VECTORS[0][1]


def _high_s(sig: str) -> str:
    r, s, v = sig[:64], int(sig[64:128], 16), int(sig[128:], 16)
    return r + (N - s).to_bytes(32, "big").hex() + f"{v ^ 1:02x}"


@pytest.mark.parametrize("bad", [
    SIGNATURE[:-2],                       # 64 bytes
    SIGNATURE + "00",                     # 66 bytes
    "",                                   # empty
    _high_s(SIGNATURE),                   # same point, high S: malleable form refused
    "zz" + SIGNATURE[2:],                 # not hex
    SIGNATURE[:-2] + "02",                # recovery id out of range
    "00" * 64 + "00",                     # r = s = 0
    "ff" * 32 + SIGNATURE[64:],           # r >= n
])
def test_bad_signatures_are_refused(bad: str) -> None:
    with pytest.raises(Forbidden):
        crypto.recover_id(PAYLOAD, bad)


def test_signature_that_does_not_recover() -> None:
    # r = 5: x = 5 is not on secp256k1 (5^3 + 7 = 132 is not a square mod p), so no key recovers.
    sig = (5).to_bytes(32, "big").hex() + (1).to_bytes(32, "big").hex() + "00"
    with pytest.raises(Forbidden):
        crypto.recover_id(PAYLOAD, sig)


def test_high_s_of_valid_signature_is_still_the_same_key_mathematically() -> None:
    """The high-S twin is a valid ECDSA signature; refusing it is a policy, checked above."""
    assert _high_s(_high_s(SIGNATURE)) == SIGNATURE


@pytest.mark.parametrize("prvkey", ["", "00" * 32, "zz" * 32, f"{N:064x}", "ab" * 31, "ab" * 33])
def test_bad_private_keys(prvkey: str) -> None:
    with pytest.raises(ValueError):
        crypto.id_of(prvkey)


def test_non_ascii_payload_is_refused() -> None:
    with pytest.raises(Forbidden):
        crypto.recover_id("é", SIGNATURE)
