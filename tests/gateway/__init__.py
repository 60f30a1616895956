"""Tests of the gateway's pure modules."""
