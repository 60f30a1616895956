"""Tests of the presence service: its store on a real Redis, and real processes end to end."""
