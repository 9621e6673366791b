"""Benchmarks: not collected by pytest; they may use the engine's internals."""
