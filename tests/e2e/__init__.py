"""End-to-end tests: real gateway and service processes, a real Redis, a real client."""
