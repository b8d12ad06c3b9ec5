"""Signing secrets: made, stored encrypted, and used to sign as the Standard Webhooks scheme says.

A secret is `whsec_` + base64 of 24 random bytes; the HMAC key is those bytes. The signature of a
delivery is `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")); during a
rotation's overlap the header carries both, space-separated, and receivers accept either.

Stored as Fernet tokens under QRFLOW_WEBHOOK_SECRET_KEY (several keys, comma-separated, rotate it: the
first encrypts, any decrypts). In development an empty setting means a key generated once and kept in
data_dir, readable by its owner only; production refuses to run webhooks without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet

from app.kit.errors import DomainError
from app.kit.settings import Settings

PREFIX = "whsec_"


class SecretKeyMissing(DomainError):
    status = 503
    code = "webhooks_unconfigured"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        return _opened(self._fernet, token)


@lru_cache(maxsize=1024)
def _opened(fernet: MultiFernet, token: str) -> str:
    # Every attempt needs its endpoint's secret: decrypted once per token, not once per delivery.
    return fernet.decrypt(token.encode()).decode()


def secret_box(settings: Settings) -> SecretBox:
    configured = settings.webhook_secret_key.get_secret_value()
    return _box(configured, str(settings.data_dir.resolve()), settings.environment == "production")


@lru_cache
def _box(configured: str, data_dir: str, production: bool) -> SecretBox:
    if configured:
        return SecretBox([key.strip().encode() for key in configured.split(",") if key.strip()])
    if production:
        raise SecretKeyMissing("webhooks need QRFLOW_WEBHOOK_SECRET_KEY (a Fernet key) in production")
    path = os.path.join(data_dir, "webhook-secret-key")
    os.makedirs(data_dir, exist_ok=True)
    try:
        # O_EXCL: the gateway and a worker starting together agree on one key.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as stored:
            return SecretBox([stored.read().strip()])
    with os.fdopen(descriptor, "wb") as new:
        key = Fernet.generate_key()
        new.write(key)
    return SecretBox([key])
