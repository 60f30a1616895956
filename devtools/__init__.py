"""Tooling of the checkout, for scripts/, bench/, loadtests/ and tests/: never imported by
the production packages, nor installed with them (the image has none of it).

``redis_server`` runs a private Redis (or Valkey) server, ``redis_binary`` finds one to run,
``processes`` starts a real process and waits for it to be ready, ``errors`` holds the
exception tree.
"""
