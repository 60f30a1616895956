"""How much a shared secret could be guessed: the rule a production JWT secret must pass."""

from __future__ import annotations

import math
from collections import Counter


__all__ = ["MIN_SECRET_BITS", "MIN_SECRET_LENGTH", "estimated_bits", "weakness"]

MIN_SECRET_LENGTH = 32
#: 32 random hex digits (128 bits) estimate at about 115, and at no less than 95 in 10,000
#: draws; 64 (``openssl rand -hex 32``) at about 250. 32 characters drawn from 5 estimate at
#: no more than 75.
MIN_SECRET_BITS = 80


def estimated_bits(secret: str) -> float:
    """Length times the Shannon entropy of the secret's own character frequencies.

    An upper bound on what the secret holds, not a measure: it catches the secrets made by
    hand (a word, spaces, one character repeated), not a clever pattern.
    """
    if not secret:
        return 0.0
    total = len(secret)
    per_char = -sum(n / total * math.log2(n / total) for n in Counter(secret).values())
    return per_char * total


def weakness(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign tokens with, or None when it passes.

    The reason never quotes the secret.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it has {len(secret)} characters, fewer than {MIN_SECRET_LENGTH}"
    if secret in (secret + secret)[1:-1]:
        return "it repeats a shorter string"
    bits = estimated_bits(secret)
    if bits < MIN_SECRET_BITS:
        return f"its characters hold about {int(bits)} bits, fewer than {MIN_SECRET_BITS}"
    return None
