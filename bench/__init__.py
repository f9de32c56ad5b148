"""Benchmarks (`instrument-id bench NAME`), the reference-style serving baseline they measure against, and the
music-like test signals. Benchmarks may import every package; no other package imports this one (tests excepted)."""
