"""Kernel tasks: production rows from traces, a same-ABI A/B harness, NCU digests, dispatch and arbiter."""
