"""Browser tests of the demo app: real Chromium (Playwright) against the real system."""
