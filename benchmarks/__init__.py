"""Speed and memory benchmark of InstruSense, run by hand: ``python -m benchmarks.run`` (see benchmarks/README.md)."""
