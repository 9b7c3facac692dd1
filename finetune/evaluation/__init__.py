"""Scoring models on held-out and real clips through the library's own analysis, baselines, selection."""
