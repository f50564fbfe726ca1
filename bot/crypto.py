"""Encryption at rest for the secrets mentorbot keeps: Slack's OAuth tokens of
multi-workspace installs, so a database dump or backup holds no usable token.

``MENTORBOT_SECRET_KEY`` holds one or more Fernet keys, comma-separated, newest first.
The newest encrypts; any of them decrypts. That is what makes rotation possible: put a
new key first, run ``mentorbot secrets rotate`` to re-encrypt every stored token with it,
then drop the old key.

Errors here are a user's to fix, so their text is one line naming the problem and the
fix, and never contains a key or a token.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_VARIABLE = "MENTORBOT_SECRET_KEY"
GENERATE_HINT = "make one with `mentorbot secrets generate`"
OAUTH_NEEDS_KEY = (
    "multi-workspace Slack (SLACK_CLIENT_ID) stores each workspace's token encrypted with it:"
)

# The stored columns that hold secrets, by table. Migration 0006 keeps its own copy, as
# a migration must not change when this list does.
TOKEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "slack_bots": ("bot_token", "bot_refresh_token"),
    "slack_installations": (
        "bot_token",
        "bot_refresh_token",
        "user_token",
        "user_refresh_token",
        "incoming_webhook_url",  # anyone holding it can post to the channel
    ),
}


class SecretKeyError(ValueError):
    """MENTORBOT_SECRET_KEY is missing, malformed, or not the key the data was stored with."""


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _parse_key(text: str, position: int, count: int) -> Fernet:
    where = f"key {position} of {count} in {KEY_VARIABLE}" if count > 1 else KEY_VARIABLE
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(
            f"{where} is not a Fernet key (32 bytes in URL-safe base64, 44 characters); "
            f"{GENERATE_HINT}"
        )
    return Fernet(text.encode("ascii"))


class TokenCipher:
    """Encrypts with the newest key, decrypts with any; strings in, strings out."""

    def __init__(self, setting: str) -> None:
        texts = [part.strip() for part in setting.split(",") if part.strip()]
        if not texts:
            raise SecretKeyError(f"{KEY_VARIABLE} is empty; {GENERATE_HINT}")
        self.key_count = len(texts)
        self._fernet = MultiFernet(
            [_parse_key(text, n, len(texts)) for n, text in enumerate(texts, 1)]
        )

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise SecretKeyError(
                f"a stored Slack token does not decrypt with any key in {KEY_VARIABLE}; if the "
                "key was changed, list the new key first and the old one after it, "
                "comma-separated"
            ) from exc

    def can_decrypt(self, stored: str) -> bool:
        try:
            self.decrypt(stored)
        except SecretKeyError:
            return False
        return True

    def rotate(self, stored: str) -> str:
        """The same secret, encrypted with the newest key."""
        try:
            return self._fernet.rotate(stored.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError) as exc:
            raise SecretKeyError(
                f"a stored Slack token does not decrypt with any key in {KEY_VARIABLE}; "
                "add the key it was encrypted with after the new one"
            ) from exc


def load_cipher(setting: str | None, *, why: str = "") -> TokenCipher:
    """The cipher for ``setting``; a missing key is an error that says what needs it."""
    if setting is None or not setting.strip():
        reason = f" {why}" if why else ""
        raise SecretKeyError(f"{KEY_VARIABLE} is not set;{reason} {GENERATE_HINT}")
    return TokenCipher(setting)
