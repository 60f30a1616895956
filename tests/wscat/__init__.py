"""The README's wscat sessions, replayed with the real wscat against the real system."""
