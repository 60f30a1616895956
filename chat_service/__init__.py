"""The chat service: rooms, messages with history, and gap-free recovery (docs/chat.md)."""
