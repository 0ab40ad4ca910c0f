"""Helpers shared by the tests and the benchmarks (bench/ imports only this package, never a test module)."""
