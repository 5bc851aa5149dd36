"""Benchmarks (`raympc bench ...`): speed and cost figures, reported rather than asserted."""
