"""The gateway's current token keys: read from the settings' files, and read again on change.

The files are looked at every ``RT_JWT_KEYS_POLL`` seconds (modification time, size, inode)
and on SIGHUP. A new :class:`KeySet` replaces the old one in one assignment, so a token is
checked against one set or the other, never a mix; a file that does not parse keeps the old
set (and is logged), so a bad edit never locks every client out. Open connections are not
touched: each was checked when it authenticated, and a key's removal affects only the next
``auth``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from common.errors import ConfigError
from common.keyset import KeySet, VerificationKey, hmac_key, key_from_pem, keys_from_jwks
from common.tasks import raise_if_cancelled
from realtime_gateway.settings import TokenSettings


__all__ = ["KeyStore", "load_keys"]

logger = logging.getLogger(__name__)

_Stamp = tuple[int, int, int] | None


def load_keys(settings: TokenSettings) -> KeySet:
    """Every key the settings name, files read now.

    Raises:
        ConfigError: a file cannot be read or parsed, or the keys are ambiguous.
    """
    keys: list[VerificationKey] = []
    if settings.secret is not None:
        keys.append(hmac_key(settings.secret, settings.secret_kid))
    if settings.public_key_file is not None:
        data = _read(settings.public_key_file, "RT_JWT_PUBLIC_KEY_FILE")
        keys.append(key_from_pem(data, settings.public_key_kid, source="RT_JWT_PUBLIC_KEY_FILE"))
    if settings.jwks_file is not None:
        data = _read(settings.jwks_file, "RT_JWT_JWKS_FILE")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ConfigError("RT_JWT_JWKS_FILE is not UTF-8 text") from None
        keys.extend(keys_from_jwks(text, source="RT_JWT_JWKS_FILE"))
    if not keys:
        raise ConfigError("no token key: the key files hold no signing key")
    return KeySet(keys)


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror}") from None


def _stamp(path: Path | None) -> _Stamp:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class KeyStore:
    """Holds :attr:`keys`, replacing them when the key files change."""

    def __init__(self, settings: TokenSettings) -> None:
        """Raises: ConfigError: the keys cannot be loaded (so the gateway does not start)."""
        self._settings = settings
        self._stamps = self._current_stamps()
        self.keys = load_keys(settings)
        self.reloads = 0

    @property
    def watches_files(self) -> bool:
        return self._settings.jwks_file is not None or self._settings.public_key_file is not None

    def _current_stamps(self) -> tuple[_Stamp, _Stamp]:
        return _stamp(self._settings.jwks_file), _stamp(self._settings.public_key_file)

    def reload(self, *, force: bool = False) -> bool:
        """Read the files again if they changed (or when forced); whether the keys changed."""
        stamps = self._current_stamps()
        if stamps == self._stamps and not force:
            return False
        self._stamps = stamps
        try:
            keys = load_keys(self._settings)
        except ConfigError as exc:
            logger.error("token keys not reloaded; keeping the previous ones: %s", exc)
            return False
        self.keys = keys
        self.reloads += 1
        logger.info("token keys reloaded", extra={"kids": sorted(map(str, keys.kids))})
        return True

    async def watch(self) -> None:
        """Poll the files until cancelled."""
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self._settings.keys_poll)
            self.reload()
