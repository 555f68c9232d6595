"""Benchmarks: `vlmad bench <name>` (bench/cli.py lists them)."""
