"""The presence service: who is subscribed to which channel, across every gateway.

See ``docs/presence.md`` for the model, its events, timings and guarantees.
"""
