"""GPU check and speed: ``python -m benchmarks.gpu --model models/instrusense --dataset DIR --out DIR``.

Run by hand on a machine with a CUDA GPU (CI has none). Four parts, each recorded on its own so one
failure does not hide the others:

1. parity: the same recordings analysed on the CPU and on the GPU give the same scores;
2. speed: warm end-to-end analysis per recording length, CPU against GPU (median of several runs);
3. training: steps per second of the shipped recipe (`finetune.train`, warm restart from `--model`) on
   the GPU without and with batch-preparing workers, and on the CPU;
4. evaluation: the dataset's real split scored on both (the metrics of the evaluation table).

`--dataset` may be a small subset (`python -m benchmarks.gpu subset ...`): speed does not depend on how
many clips there are, and the real split is what part 4 scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from benchmarks.recordings import write_recording
from benchmarks.timing import end_to_end, median_runs

log = logging.getLogger("benchmarks.gpu")

RECIPE = Path(__file__).parents[1] / "finetune" / "recipes" / "restart.json"
"""The shipped model's warm restarts, so the steps timed are the recipe's steps."""


def device_record() -> dict:
    import transformers

    gpu = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    return {"gpu": gpu.name if gpu else None, "gpu_memory_gb": round(gpu.total_memory / 2**30, 1) if gpu else None,
            "cpu_cores": os.cpu_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "python": platform.python_version()}


def parity(model: str, files: list[Path]) -> dict:
    """Largest difference between CPU and GPU window scores, and whether the rankings agree."""
    from instrusense.analysis import analyze_file
    from instrusense.model import load_tagger
    from instrusense.settings import load_settings

    settings = load_settings(model=model)
    cpu, gpu = load_tagger(model, device="cpu"), load_tagger(model, device="cuda")
    out = {}
    for f in files:
        a, b = analyze_file(f, cpu, settings), analyze_file(f, gpu, settings)
        out[f.name] = {"windows": int(len(a.timeline.probs)),
                       "max_abs_diff": float(np.abs(a.timeline.probs - b.timeline.probs).max()),
                       "same_top5": [s.label for s in a.top(5)] == [s.label for s in b.top(5)],
                       "top1": a.labels[0].label}
    return out


def speed(model: str, folder: Path, lengths: list[float], runs: int) -> dict:
    from instrusense.model import load_tagger
    from instrusense.settings import load_settings

    settings = load_settings(model=model)
    files = {s: write_recording(folder / f"{s:g}s.wav", s, "wav") for s in lengths}
    out = {}
    for device in ("cpu", "cuda"):
        tagger = load_tagger(model, device=device)
        end_to_end(files[lengths[0]], tagger, settings)  # warm-up
        for s, f in files.items():
            med = median_runs([end_to_end(f, tagger, settings) for _ in range(runs)])
            out[f"{device} {s:g} s"] = {"median_s": med["total_s"], "decode_s": med["decode_s"],
                                        "windows": med["windows"], "runs": runs}
            log.info("%s %g s: %.3f s", device, s, out[f"{device} {s:g} s"]["median_s"])
    return out


def training(model: str, dataset: str, folder: Path, steps: int, workers: list[int], cpu_steps: int) -> dict:
    """Steps per second over the second half of a short run (the first half absorbs start-up)."""
    from transformers import HfArgumentParser

    from finetune.train import DataArguments, ModelArguments, TrainArguments, recipe_args, train

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainArguments))
    out = {}
    runs = [("cuda", w, steps) for w in workers] + [("cpu", 0, cpu_steps)]
    for device, w, n in runs:
        name = f"{device} workers={w}"
        started = time.time()
        args = recipe_args([str(RECIPE), "--base", model, "--init_from", model, "--dataset", dataset,
                            "--eval_splits", "validation", "--eval_limit", "16", "--output_dir", str(folder / name / "model"),
                            "--run_dir", str(folder / name), "--max_steps", str(n), "--eval_every", str(n // 2),
                            "--device", device, "--workers", str(w), "--seed", "1", "--threads", "0"])
        result = train(*parser.parse_args_into_dataclasses(args=args))
        last = result["history"][-1]
        out[name] = {"steps_per_s": last["steps_per_s"], "steps_timed": n - n // 2, "loss": last["loss"],
                     "wall_s": time.time() - started}
        log.info("%s: %.2f steps/s", name, last["steps_per_s"])
    return out


def evaluation(model: str, dataset: str) -> dict:
    from finetune.data.clips import load_clips
    from finetune.evaluation.evaluate import hf_scorer, score_parts

    splits = {"real": load_clips(dataset, "real")}
    out = {}
    for device in ("cpu", "cuda"):
        started = time.time()
        scorer, _ = hf_scorer(model, 32, device=device)
        rows = score_parts({"real": scorer(splits["real"])}, splits)
        out[device] = {"seconds": time.time() - started,
                       "rows": {r: {k: v for k, v in m.items() if k != "per_label_f1"} for r, m in rows.items()}}
    return out


def subset(dataset: str, out: str, train: int, validation: int, seed: int = 0) -> None:
    """A small copy of a dataset for a machine it cannot travel to whole: a random sample of train and
    validation, every real clip."""
    import datasets

    full = datasets.load_from_disk(dataset)
    pick = {"train": train, "validation": validation}
    parts = {}
    for name, split in full.items():
        n = pick.get(name)
        parts[name] = split if n is None else split.shuffle(seed=seed).select(range(min(n, len(split))))
    datasets.DatasetDict(parts).save_to_disk(out)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("subset", help="write a small copy of a dataset (run where the dataset is)")
    s.add_argument("dataset")
    s.add_argument("out")
    s.add_argument("--train", type=int, default=120)
    s.add_argument("--validation", type=int, default=40)
    r = sub.add_parser("run", help="the check itself (on the GPU machine)")
    r.add_argument("--model", default="models/instrusense")
    r.add_argument("--dataset", required=True)
    r.add_argument("--out", type=Path, required=True, help="folder for gpu.json")
    r.add_argument("--examples", type=Path, default=Path("examples"))
    r.add_argument("--lengths", type=float, nargs="+", default=[10, 60, 600])
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--steps", type=int, default=200, help="GPU training steps per worker setting")
    r.add_argument("--cpu_steps", type=int, default=20)
    r.add_argument("--workers", type=int, nargs="+", default=None, help="default: 0 and cores - 1")
    r.add_argument("--parts", nargs="+", default=["parity", "speed", "training", "evaluation"])
    a = p.parse_args(argv)
    if a.command == "subset":
        subset(a.dataset, a.out, a.train, a.validation)
        return 0
    if a.command != "run":
        p.print_help()
        return 2
    if not torch.cuda.is_available():
        log.error("no CUDA GPU here: this check is for a machine with one")
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": device_record()}
    workers = a.workers if a.workers is not None else [0, max(1, (os.cpu_count() or 2) - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        jobs = {"parity": lambda: parity(a.model, sorted(a.examples.glob("*.flac"))
                                         + [write_recording(work / "parity60.wav", 60, "wav")]),
                "speed": lambda: speed(a.model, work, a.lengths, a.runs),
                "training": lambda: training(a.model, a.dataset, work / "train", a.steps, workers, a.cpu_steps),
                "evaluation": lambda: evaluation(a.model, a.dataset)}
        for part in a.parts:
            started = time.time()
            try:
                results[part] = jobs[part]()
            except Exception:  # record and go on: the other parts still tell something
                results[part] = {"error": traceback.format_exc()}
                log.error("%s failed:\n%s", part, results[part]["error"])
            log.info("%s done in %.0f s", part, time.time() - started)
            (a.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
