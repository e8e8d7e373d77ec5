"""Benchmarks: ``python -m gfix_sdk.bench <name> [options]``.

Every benchmark measures the things it compares side by side in one run,
prints a table and one JSON line, and states the machine it ran on.
"""
