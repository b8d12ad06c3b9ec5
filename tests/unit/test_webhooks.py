"""Webhooks' pure parts: signing as Standard Webhooks says, destinations refused, secrets sealed, filters."""

from __future__ import annotations

import uuid

import pytest
from cryptography.fernet import Fernet
from standardwebhooks import Webhook, WebhookVerificationError

from app.webhooks.addresses import Refused, check_url, resolve
from app.webhooks.delivery import retry_schedule
from app.webhooks.outbox import Subscription
from app.webhooks.secrets import SecretBox, new_secret, sign


def test_a_signature_verifies_with_the_standard_webhooks_library_and_only_with_its_secret():
    secret, other = new_secret(), new_secret()
    body, timestamp = b'{"id": "e1", "type": "ping"}', int(__import__("time").time())
    headers = {"webhook-id": "e1", "webhook-timestamp": str(timestamp),
               "webhook-signature": sign(secret, "e1", timestamp, body)}
    assert Webhook(secret).verify(body, headers)["type"] == "ping"
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254", "::1", "fd00::1",
             "fe80::1", "224.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "localhost"],
)
def test_private_loopback_link_local_and_the_like_are_refused_unless_allowed(host):
    with pytest.raises(Refused) as refused:
        resolve(host, 80, allow_private=False)
    assert refused.value.field == "url" and "resolves to" in refused.value.message
    assert resolve(host, 80, allow_private=True)


def test_urls_are_checked_for_scheme_credentials_and_https_in_production():
    assert check_url("https://example.com/hook", production=True) == ("https", "example.com", 443)
    assert check_url("http://example.com:8080/x", production=False) == ("http", "example.com", 8080)
    for url, production in (("http://example.com/", True), ("ftp://example.com/", False),
                            ("https://user:pw@example.com/", False), ("/relative", False)):
        with pytest.raises(Refused):
            check_url(url, production=production)


def test_secrets_are_sealed_and_a_rotated_key_still_opens_old_ones():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    secret = new_secret()
    sealed = SecretBox([old]).seal(secret)
    assert secret not in sealed and secret.removeprefix("whsec_") not in sealed
    assert SecretBox([new, old]).open(sealed) == secret


def test_the_retry_schedule_is_read_from_its_setting():
    assert retry_schedule("5,60,600,3600,10800,28800,43200") == (5, 60, 600, 3600, 10800, 28800, 43200)
    assert sum(retry_schedule("5,60,600,3600,10800,28800,43200")) / 3600 == pytest.approx(24.2, abs=0.1)


def test_filters_choose_events_by_type_code_and_tag():
    code = uuid.uuid4()
    def subscription(events, code_ids=None, tags=None):  # noqa: ANN001, ANN202
        return Subscription(uuid.uuid4(), uuid.uuid4(), frozenset(events),
                            None if code_ids is None else frozenset(code_ids),
                            None if tags is None else frozenset(tags))
    assert subscription(["*"]).wants("link.scanned", code, [])
    assert not subscription(["qrcode.ready"]).wants("link.scanned", code, [])
    assert subscription(["*"], code_ids=[str(code)]).wants("qrcode.ready", code, [])
    assert not subscription(["*"], code_ids=[str(uuid.uuid4())]).wants("qrcode.ready", code, [])
    assert subscription(["*"], tags=["print"]).wants("qrcode.ready", code, ["print", "spring"])
    assert not subscription(["*"], tags=["print"]).wants("qrcode.ready", code, ["web"])
    assert subscription(["*"], tags=["print"]).wants("batch.completed", None, [])
