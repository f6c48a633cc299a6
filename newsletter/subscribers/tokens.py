"""Tokens in emailed links.

The manage token (unsubscribe + preferences) never expires and is derived as
HMAC(secret key, salt): the database keeps only the salt and the token's SHA-256, so a
leaked database reveals no working link, yet every digest can carry the link. It is
128 bits or more of HMAC output, so it cannot be guessed.

The confirmation token is random, mailed once, stored as its SHA-256, and expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 24 bytes = 192 bits, comfortably above the 128 bits the issue asks for.
TOKEN_BYTES = 24


def new_salt() -> str:
    return secrets.token_hex(16)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def manage_token(secret_key: str, salt: str) -> str:
    digest = hmac.new(secret_key.encode(), b"manage:" + salt.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:TOKEN_BYTES]).decode().rstrip("=")


def new_confirm_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)
