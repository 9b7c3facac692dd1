"""Archive-scale analysis: every audio file under a folder, in a list or in a `datasets` dataset, into one
Parquet table, resumably, with a local worker pool or on Ray.

Modules: `sources` (what to analyse), `worker` (one loaded model per process), `rows` (the JSON record as a
Parquet row), `store` (incremental, resumable Parquet), `pool` / `on_ray` (the two engines), `job` (the run
and its summary), `hf` (`analyze_dataset` for the Hugging Face ecosystem).
"""
