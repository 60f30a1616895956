"""What the gateway and every service share: wire values, codec, bus, settings, health."""
