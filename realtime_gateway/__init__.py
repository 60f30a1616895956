"""The WebSocket gateway: the only process clients talk to."""
