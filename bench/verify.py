"""Token verification cost: ``python -m bench.verify`` prints µs per verify per algorithm.

Keys are generated here; each algorithm verifies one valid token ``--rounds`` times through
:func:`common.auth.verify_token` (key choice by ``kid``, signature, claim checks), in this
process only.
"""

from __future__ import annotations

import argparse
import json
import time

from common.auth import issue_token, verify_token
from common.keyset import KeySet, hmac_key, keys_from_jwks
from common.settings import Secret
from tests.support.keys import claims, new_key


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.verify")
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds
    secret = Secret("9c1f0e7a5b3d42e8a6f1c0b9d8e7a6f5c4b3a29180f7e6d5c4b3a2918f7e6d5c")
    signers = [new_key(alg, f"k-{alg}") for alg in ("RS256", "ES256", "EdDSA")]
    jwks = json.dumps({"keys": [key.jwk() for key in signers]})
    keys = KeySet([hmac_key(secret), *keys_from_jwks(jwks, source="bench")])
    tokens = {"HS256": issue_token(secret, "alice")}
    tokens.update({key.algorithm: key.sign(claims("alice")) for key in signers})
    for algorithm, token in tokens.items():
        verify_token(keys, token)
        started = time.perf_counter()
        for _ in range(rounds):
            verify_token(keys, token)
        elapsed = time.perf_counter() - started
        print(f"{algorithm:6} {elapsed / rounds * 1e6:8.1f} µs per verify ({rounds} rounds)")


if __name__ == "__main__":
    main()
