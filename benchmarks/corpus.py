"""Archive throughput: ``python -m benchmarks.corpus --files 1000 --out benchmarks/corpus_results.json``.

The same generated five-second files (alternating wav and mp3, as the CLI batch of `benchmarks.run`)
analysed three ways, each a fresh process timed from start to exit (start-up, model loading and writing the
results included): the CLI (`analyze --json`, one process), `corpus` with its local worker pool, and
`corpus --ray` on a local Ray. Each output is checked (one row per file, no errors). `--rounds N` repeats
the three in turn, so that on a busy machine each meets the same load; the load average is recorded before
and after every run. Run by hand; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import procs, recordings, report
from benchmarks.machine import load_average, machine_record
from instrusense.settings import DEFAULT_MODEL

log = logging.getLogger("benchmarks")

FILE_SECONDS = 5.0
RUN_TIMEOUT_S = 3 * 3600.0  # a busy shared machine can be ten times slower than a quiet one
WAYS = ("cli", "pool", "ray")


def _command(way: str, folder: Path, files: list[Path], out: Path, model: str, workers: int) -> list[str]:
    if way == "cli":
        return [sys.executable, "-m", "instrusense", "analyze", "--json", "--model", model, *map(str, files)]
    cmd = [sys.executable, "-m", "instrusense", "corpus", str(folder), "--out", str(out), "--model", model]
    cmd += ["--workers", str(workers)] if workers else []
    return cmd + (["--ray"] if way == "ray" else [])


def _check(way: str, result: procs.ProcResult, out: Path, n: int) -> None:
    """Every file analysed, none failed: a fast run that skipped work must not pass as a fast run."""
    if way == "cli":
        rows = json.loads(result.stdout)
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out, columns=["file", "error"]).to_pylist()
    errors = [r["error"] for r in rows if r["error"]]
    if result.returncode != 0 or len(rows) != n or errors:
        raise procs.BenchmarkError(f"{way}: exit code {result.returncode}, {len(rows)} of {n} rows, "
                                   f"{len(errors)} errors {errors[:2]}\n{result.stderr_tail}")


def measure(way: str, folder: Path, files: list[Path], model: str, workers: int, workdir: Path) -> dict:
    out = workdir / f"{way}.parquet"
    for stale in (out, out.with_name(out.name + ".parts")):  # a fresh job, never a resumed one
        if stale.is_dir():
            import shutil

            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    before = load_average()
    log.info("%s over %d files (load average %s)", way, len(files), before)
    result = procs.run_measured(_command(way, folder, files, out, model, workers), procs.child_env(workdir),
                                workdir / f"{way}-stdout.txt", timeout_s=RUN_TIMEOUT_S)
    _check(way, result, out, len(files))
    return {"wall_s": result.wall_s, "files_per_minute": 60.0 * len(files) / result.wall_s,
            "peak_rss_mb_main_process": result.maxrss_kb / 1024,
            "load_before": before, "load_after": load_average()}



def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {way: {"median_files_per_minute": statistics.median(r["files_per_minute"] for r in rs),
                 "median_wall_s": statistics.median(r["wall_s"] for r in rs), "runs": rs}
           for way, rs in runs.items()}
    cli = out.get("cli", {}).get("median_files_per_minute")
    for way in out:
        out[way]["vs_cli"] = out[way]["median_files_per_minute"] / cli if cli else None
    return out


def render(results: dict) -> str:
    m = results["machine"]
    lines = [f"Corpus throughput, {results['config']['files']} files of {FILE_SECONDS:g} s "
             f"(wav/mp3, 44.1 kHz stereo), {results['config']['rounds']} round(s); median of the rounds; "
             f"whole process (start-up included).", "",
             f"Machine: {m.get('cpu_model')}, {m.get('cpu_affinity')} cores usable"
             f"{'; shared with other jobs' if results['config']['shared'] else ''}.", ""]
    rows = [[way, report.fmt(r["median_wall_s"], 1), report.fmt(r["median_files_per_minute"], 0),
             report.fmt(r["vs_cli"], 2),
             "; ".join(f"{run['load_before']} → {run['load_after']}" for run in r["runs"])]
            for way, r in results["ways"].items()]
    lines.append(report.markdown_table(["way", "wall s", "files/min", "× CLI",
                                        "load average before → after (1/5/15 min)"], rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__.split("\n\n")[1])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="corpus --workers (default: its own, one per core)")
    p.add_argument("--ways", nargs="*", default=list(WAYS), choices=WAYS)
    p.add_argument("--shared", action="store_true", help="note in the results that other jobs ran meanwhile")
    p.add_argument("--out", type=Path, default=Path("benchmarks/corpus_results.json"),
                   help="JSON results; the markdown table goes beside it as .md (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the generated files here (default: temporary)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="instrusense-corpus-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        folder = workdir / "files"
        files = sorted(folder.glob("clip*")) if folder.is_dir() else []
        if len(files) != args.files:
            log.info("generating %d files in %s", args.files, folder)
            files = recordings.batch_set(folder, args.files, FILE_SECONDS)
        runs: dict[str, list[dict]] = {way: [] for way in args.ways}
        for _ in range(args.rounds):
            for way in args.ways:
                runs[way].append(measure(way, folder, files, args.model, args.workers, workdir))
    results = {"config": {"files": args.files, "file_seconds": FILE_SECONDS, "rounds": args.rounds,
                          "workers": args.workers, "shared": args.shared, "model": args.model},
               "machine": machine_record(), "ways": summarise(runs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
