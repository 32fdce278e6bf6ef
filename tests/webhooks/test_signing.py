"""Signatures (webhooks.signing): `verify` is the reference receiver code, so it must accept what `sign` makes and
refuse a changed body, another secret, an old timestamp and a malformed header."""
import hashlib
import hmac
import time

from members.webhooks.signing import sign, signature, verify

SECRET = "whsec-test"
BODY = b'{"id":"1","event":"member.updated","data":{}}'


def test_a_signature_verifies_with_the_same_secret():
    header = sign(secret=SECRET, body=BODY)

    assert verify(secret=SECRET, body=BODY, header=header)


def test_the_header_carries_the_timestamp_and_the_hmac_of_timestamp_dot_body():
    header = sign(secret=SECRET, body=BODY, timestamp=1700000000)

    assert header == f"t=1700000000,v1={signature(secret=SECRET, timestamp=1700000000, body=BODY)}"
    assert header.endswith(hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest())


def test_a_tampered_body_is_rejected():
    header = sign(secret=SECRET, body=BODY)

    assert not verify(secret=SECRET, body=BODY.replace(b"updated", b"deleted"), header=header)


def test_another_secret_is_rejected():
    header = sign(secret="someone-else", body=BODY)

    assert not verify(secret=SECRET, body=BODY, header=header)


def test_a_signature_older_than_five_minutes_is_rejected():
    now = time.time()
    header = sign(secret=SECRET, body=BODY, timestamp=int(now) - 301)

    assert not verify(secret=SECRET, body=BODY, header=header, now=now)
    assert verify(secret=SECRET, body=BODY, header=sign(secret=SECRET, body=BODY, timestamp=int(now) - 299), now=now)


def test_a_changed_timestamp_is_rejected():
    header = sign(secret=SECRET, body=BODY, timestamp=1700000000)
    replayed = header.replace("t=1700000000", f"t={int(time.time())}")

    assert not verify(secret=SECRET, body=BODY, header=replayed)


def test_a_malformed_header_is_rejected():
    for header in ("", "v1=abc", "t=abc,v1=def", "t=1700000000", "garbage"):
        assert not verify(secret=SECRET, body=BODY, header=header, now=1700000000)
