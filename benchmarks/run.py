"""Speed and memory benchmark: ``python -m benchmarks.run --model models/instrusense --out benchmarks/results.json``.

Generates its own music-like recordings, then measures cold start (CLI and app), warm end-to-end time
per recording length and format (median of several runs, by stage), peak memory per recording (one
fresh process each), CLI batch throughput, and the same audio through AST-base and through our model
at float32 (interleaved, so the ratios hold on a busy machine). Prints a markdown table, writes the
results as JSON and the table beside it (``.md``). Run by hand on a quiet machine; `--quick` is a smoke
check whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import procs, recordings, report
from benchmarks.machine import load_average, machine_record
from instrusense.settings import DEFAULT_MODEL, load_settings

log = logging.getLogger("benchmarks")

SECTIONS = ("cold", "memory", "batch", "e2e", "compare")
FULL = {"lengths": [10, 60, 180, 600], "runs": 5, "cold_runs": 3, "batch_files": 100, "compare_seconds": 60}
QUICK = {"lengths": [10, 60], "runs": 1, "cold_runs": 1, "batch_files": 10, "compare_seconds": 10}
BATCH_FILE_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1])
    p.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint directory or Hub id (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results.json"),
                   help="JSON results; the markdown table goes beside it as .md (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: 10 s and 60 s only, 1 run, 10 batch files (figures mean nothing)")
    p.add_argument("--runs", type=int, default=None, help="warm repetitions per measurement (default 5, quick 1)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="measurements to leave out")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the generated recordings here (default: a temporary folder, removed after)")
    return p


def _progress(message: str) -> None:
    log.info("%s (load average %s)", message, load_average())


def measure_cold(cfg: dict, model: str, file: Path, workdir: Path) -> dict:
    out = {}
    for face, measure in (("cli", procs.cli_cold_start), ("app", procs.app_cold_start)):
        runs = []
        for i in range(cfg["cold_runs"]):
            _progress(f"cold start {face} {i + 1}/{cfg['cold_runs']}")
            runs.append(measure(file, model, workdir))
        summary = {"median_s": statistics.median(r["first_result_s"] for r in runs), "runs": runs}
        for key in ("model_loaded_s", "serving_s", "peak_rss_mb"):
            values = [r[key] for r in runs if r.get(key) is not None]
            summary[key] = statistics.median(values) if values else None
        out[face] = summary
    return out


def measure_memory(files: dict, model: str, workdir: Path) -> list[dict]:
    rows = []
    for (seconds, fmt), path in files.items():
        _progress(f"peak memory {path.name}")
        rows.append({"seconds": seconds, "format": fmt, **procs.memory_probe(path, model, workdir)})
    return rows


def measure_e2e(files: dict, tagger, settings, runs: int) -> list[dict]:
    from benchmarks.timing import end_to_end, median_runs

    end_to_end(min(files.values(), key=lambda p: p.stat().st_size), tagger, settings)  # warm-up
    timed: dict[tuple, list[dict]] = {key: [] for key in files}
    for rep in range(runs):  # repetition by repetition, so a burst of load spreads over all recordings
        _progress(f"end to end, run {rep + 1}/{runs} over {len(files)} recordings")
        for key, path in files.items():
            timed[key].append(end_to_end(path, tagger, settings))
    return [{"seconds": seconds, "format": fmt, "median": median_runs(runs_), "runs": runs_}
            for (seconds, fmt), runs_ in timed.items()]


def model_info(tagger, settings, model_id: str) -> dict:
    from benchmarks.timing import describe_precision, parameter_count
    from instrusense.analysis import geometry_for

    geometry = geometry_for(tagger, settings)
    config = getattr(tagger.model, "config", None)
    return {"id": model_id, "type": getattr(config, "model_type", type(tagger.model).__name__),
            "parameters": parameter_count(tagger.model), "precision": describe_precision(tagger.model),
            "window_s": geometry.window, "hop_s": geometry.hop, "batch_size": settings.batch_size}


def run(args: argparse.Namespace, workdir: Path) -> dict:
    cfg = dict(QUICK if args.quick else FULL)
    cfg["runs"] = args.runs or cfg["runs"]
    results: dict = {"config": {**cfg, "quick": args.quick, "formats": sorted(recordings.FORMATS),
                                "batch_file_seconds": BATCH_FILE_SECONDS, "skipped": args.skip},
                     "machine": machine_record()}
    _progress(f"generating recordings in {workdir}")
    files = recordings.recording_set(workdir / "audio", cfg["lengths"], sorted(recordings.FORMATS))
    cold_file = files[(min(cfg["lengths"]), "wav")]
    results["config"]["cold_file"] = cold_file.name

    if "cold" not in args.skip:
        results["cold_start"] = measure_cold(cfg, args.model, cold_file, workdir)
    if "memory" not in args.skip:
        results["memory"] = measure_memory(files, args.model, workdir)
    if "batch" not in args.skip:
        batch = recordings.batch_set(workdir / "batch", cfg["batch_files"], BATCH_FILE_SECONDS)
        _progress(f"CLI batch of {len(batch)} files")
        results["batch"] = {"file_seconds": BATCH_FILE_SECONDS, **procs.cli_batch(batch, args.model, workdir)}

    if {"e2e", "compare"} - set(args.skip):
        import torch

        from benchmarks.timing import compare
        from instrusense.model import tagger_for

        settings = load_settings(model=args.model)
        tagger = tagger_for(settings)
        results["machine"]["torch_threads"] = torch.get_num_threads()  # as the analysis runs (INSTRUSENSE_THREADS)
        results["model"] = model_info(tagger, settings, args.model)
        if "e2e" not in args.skip:
            results["end_to_end"] = measure_e2e(files, tagger, settings, cfg["runs"])
        if "compare" not in args.skip:
            path = files.get((cfg["compare_seconds"], "wav")) or recordings.write_recording(
                workdir / "audio" / f"compare-{cfg['compare_seconds']}s.wav", cfg["compare_seconds"], "wav")
            _progress(f"AST-base and float32 comparison on {path.name} × {cfg['runs']}")
            comp = compare(path, tagger, settings, args.model, cfg["runs"])
            results["comparison"] = comp
            ast_per_s = comp["per_audio_second"]["ast_base"]
            for row in results.get("end_to_end", []):
                row["x_faster_than_ast"] = ast_per_s * row["median"]["audio_s"] / row["median"]["total_s"]

    results["machine"]["load_average_end"] = load_average()
    results["targets"] = report.verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if Path(args.model).exists():  # measured processes run in the repository root
        args.model = str(Path(args.model).resolve())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio_client's request log
    started = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="instrusense-bench-") as tmp:
            results = run(args, Path(tmp))
    results["config"]["benchmark_wall_s"] = time.perf_counter() - started
    markdown = report.render_markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
    log.info("wrote %s and %s in %.0f s", args.out, args.out.with_suffix(".md"), results["config"]["benchmark_wall_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
