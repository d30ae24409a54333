"""Benchmarks (run by hand: ``python -m benchmarks``; CI: ``python -m benchmarks --smoke``)."""
