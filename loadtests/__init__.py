"""Load tests of the bids service: locust, a private stack, invariant checks, a scaling run."""
